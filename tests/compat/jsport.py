"""The JavaScript the oracle's Worker leans on, in Python: what the port needs to stay literal.

The Worker (``shared/oracle/workers/worker.js``) logs what it observes as JSON, with labels
built by ``JSON.stringify`` and values measured the JavaScript way (a string's ``length``
counts UTF-16 code units).  These helpers reproduce exactly that, so that a difference left
between two traces is a difference of the runtime, not of the port.

Two pieces model the Worker's execution environment:

* :class:`Scope` is one request's lifetime.  In workerd a ``setTimeout`` belongs to the
  request that set it and never fires once that request is over (RULES B11, H3: after an
  auto-replied close or a drop, the close handler's timers do not run).  The port's timers
  are scoped the same way; an upgrade request lasts while the socket it serves is open.
* :func:`run_async` runs the body of an ``async`` behaviour.  An ``await`` ends a turn of
  JavaScript and lets events be delivered; the body therefore runs in its own greenlet,
  outside the serving layer's handler turn, and :func:`sleep` is its ``await sleep(ms)``.

Runs under gevent only (``worker_app`` monkey-patches at start).
"""

from __future__ import annotations

import contextvars
import json
import math
import re
from typing import Any, Callable, Optional, Union
from urllib.parse import parse_qsl

import gevent
from gevent.event import AsyncResult

from cfws_sync import Blob, DOMException, RangeError, WebSocketError

#: Oracle variants: name -> (compatibility date, flags).  Data copied from the oracle's
#: ``harness/targets.py`` (``VARIANTS``, workerd 2026-11-17).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "current": ("2026-11-17", []),
    "manual_reply": ("2026-11-17", ["web_socket_manual_reply_to_close"]),
    "pre_autoreply": ("2026-04-06", []),
    "pre_binarytype": ("2026-03-16", []),
    "legacy": ("2025-06-01", []),
    "legacy_optin": ("2025-06-01", ["web_socket_auto_reply_to_close",
                                    "websocket_standard_binary_type",
                                    "websocket_close_reason_byte_limit"]),
    "no_std_binary": ("2026-11-17", ["no_websocket_standard_binary_type"]),
    "pedantic": ("2026-11-17", ["pedantic_wpt"]),
    "no_compression": ("2026-11-17", ["no_web_socket_compression"]),
}

Entry = dict[str, Any]
#: What one scenario id has observed, in order.
Log = list[Entry]


class Error(Exception):
    """JavaScript's ``Error``: what ``throw new Error(message)`` throws in the Worker."""


# -- JSON.stringify ---------------------------------------------------------------------

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _js_plain(value: Any) -> Any:
    """Replace what JSON.stringify writes as ``null`` (NaN, infinities) by ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _js_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_js_plain(v) for v in value]
    return value


def js_json(value: Any) -> str:
    """``JSON.stringify(value)``: compact, non-ASCII kept, lone surrogates escaped."""
    text = json.dumps(_js_plain(value), ensure_ascii=False, separators=(",", ":"))
    return _LONE_SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), text)


def js_number(text: str) -> Union[int, float]:
    """``Number(text)`` for the decimal forms the Worker's query parameters use."""
    text = text.strip()
    if not text:
        return 0
    if _DECIMAL.fullmatch(text):
        number = float(text)
        return int(number) if number.is_integer() else number  # JS has one number type
    if text.lstrip("+-") == "Infinity":
        return -math.inf if text.startswith("-") else math.inf
    return math.nan


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def utf16_len(text: str) -> int:
    """A JavaScript string's ``length``: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def js_typeof(value: Any) -> str:
    """``typeof value`` for the Python value standing in for it (``None`` is undefined)."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if callable(value):
        return "function"
    return "object"


# -- what the Worker logs ------------------------------------------------------------------

def err_info(error: Optional[BaseException]) -> dict[str, Any]:
    """``errInfo(e)``: ``{name, ctor, message}`` as JavaScript would show the error."""
    if error is None:
        return {"value": "undefined"}
    if isinstance(error, DOMException):
        return {"name": error.name, "ctor": "DOMException", "message": error.message}
    if isinstance(error, RangeError):
        name = "RangeError"
    elif isinstance(error, TypeError):
        name = "TypeError"
    elif isinstance(error, (WebSocketError, Error)):
        name = "Error"  # the runtime's network and protocol errors are plain Errors
    else:
        name = type(error).__name__
    message = getattr(error, "message", None)
    if not isinstance(message, str):
        message = str(error)
    return {"name": name, "ctor": name, "message": message}


def _hex(data: bytes) -> str:
    return data.hex()


def describe_data(data: Any) -> dict[str, Any]:
    """``describeData(d)``: ``str`` is a string, ``bytes`` an ArrayBuffer, ``Blob`` a Blob."""
    if isinstance(data, str):
        out: dict[str, Any] = {"type": "string", "len": utf16_len(data)}
        if out["len"] <= 200:
            out["text"] = data
        return out
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        out = {"type": "ArrayBuffer", "byteLength": len(raw)}
        if len(raw) <= 64:
            out["hex"] = _hex(raw)
        return out
    if isinstance(data, Blob):
        return {"type": "Blob", "size": data.size, "blobType": data.type}
    return {"type": "[object %s]" % type(data).__name__}


def parse_code_reason(spec: Optional[str]) -> list[Any]:
    """``parseCodeReason``: ``"1000:bye"`` -> ``[1000, "bye"]``, ``"none"`` -> ``[]``."""
    if spec is None or spec == "none" or spec == "":
        return []
    code, colon, reason = spec.partition(":")
    if not colon:
        return [js_number(spec)]
    return [js_number(code), reason]


def fmt_call(name: str, args: list[Any]) -> str:
    """``fmtCall``: ``server.close(1000, "bye")``."""
    return "%s(%s)" % (name, ", ".join(js_json(a) for a in args))


def attempt(log: Log, label: str, fn: Callable[[], Any]) -> Any:
    """``attempt``: call ``fn``, log ``{call, ok, ret?}`` or ``{call, threw}``."""
    try:
        result = fn()
    except Exception as exc:
        log.append({"call": label, "threw": err_info(exc)})
        return None
    entry: dict[str, Any] = {"call": label, "ok": True}
    if result is not None:
        entry["ret"] = result
    log.append(entry)
    return result


class Params:
    """``URLSearchParams`` of a query string: ``get`` (first value or ``None``) and ``has``."""

    def __init__(self, query: str) -> None:
        self._pairs = parse_qsl(query, keep_blank_values=True)

    def get(self, name: str) -> Optional[str]:
        for key, value in self._pairs:
            if key == name:
                return value
        return None

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self._pairs)


# -- the execution environment ---------------------------------------------------------------

_scope: contextvars.ContextVar["Scope"] = contextvars.ContextVar("worker_scope")


class Scope:
    """One request's lifetime: its timers run only while it lasts (RULES B11, H3).

    A plain request lasts until it is answered.  An upgrade request lasts while the socket
    it serves is open: workerd ends the request's IoContext once the close handshake is
    complete or the peer is gone, and its pending timers never fire.
    """

    def __init__(self) -> None:
        self._ended = False
        self._served: Optional[Any] = None
        self._timers: list[gevent.Greenlet] = []

    @property
    def ended(self) -> bool:
        """Whether the request is over (answered, or its connection served)."""
        return self._ended

    @property
    def alive(self) -> bool:
        """Whether the request still runs JavaScript."""
        served = self._served
        return not self._ended and (served is None or served.ready_state != 3)

    def serve(self, ws: Any) -> None:
        """This upgrade request lasts while ``ws`` (the end kept in the Worker) is open."""
        self._served = ws

    def set_timeout(self, fn: Callable[[], Any], ms: Union[int, float]) -> None:
        """``setTimeout(fn, ms)`` in this request."""
        if not self.alive:
            return
        context = contextvars.copy_context()
        delay = 0.0 if ms != ms else max(float(ms), 0.0) / 1000.0

        def fire() -> None:
            if self.alive:
                context.run(fn)

        timer = gevent.spawn_later(delay, fire)
        self._timers = [t for t in self._timers if not t.dead]
        self._timers.append(timer)

    def end(self) -> None:
        """The request is over: pending timers never fire."""
        self._ended = True
        timers, self._timers = self._timers, []
        current = gevent.getcurrent()
        for timer in timers:
            if not timer.dead and timer is not current:
                timer.kill(block=False)

    @staticmethod
    def current() -> "Scope":
        """The scope of the request being handled."""
        return _scope.get()

    def enter(self) -> contextvars.Token["Scope"]:
        return _scope.set(self)

    @staticmethod
    def leave(token: contextvars.Token["Scope"]) -> None:
        _scope.reset(token)


def set_timeout(fn: Callable[[], Any], ms: Union[int, float]) -> None:
    """``setTimeout(fn, ms)``, scoped to the current request."""
    Scope.current().set_timeout(fn, ms)


def sleep(ms: Union[int, float]) -> None:
    """``await sleep(ms)`` inside a body run by :func:`run_async`."""
    gevent.sleep(max(float(ms), 0.0) / 1000.0)


def run_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Run the body of an ``async`` function to its end and return its result.

    The body runs in its own greenlet with the caller's context (compatibility, scope),
    outside any handler turn, so deliveries start at each ``await`` as in JavaScript.
    """
    context = contextvars.copy_context()
    return gevent.spawn(context.run, fn, *args).get()


class Deferred:
    """A promise resolved once by ``done(value)``; :meth:`race` is ``Promise.race`` with
    a sleep that yields ``"timeout"``."""

    def __init__(self) -> None:
        self._result: AsyncResult = AsyncResult()

    def done(self, value: Any) -> None:
        if not self._result.ready():
            self._result.set(value)

    def race(self, ms: Union[int, float]) -> Any:
        try:
            return self._result.get(timeout=max(float(ms), 0.0) / 1000.0)
        except gevent.Timeout:
            return "timeout"
