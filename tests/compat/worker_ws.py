"""The Worker's upgrade behaviours (``/ws/<behaviour>``), ported line by line.

Each behaviour wires up the server end of a pair and returns the 101 ``Response``, as the
``WS_BEHAVIOURS`` of ``shared/oracle/workers/worker.js`` do; labels and log shapes are the
same.  ``instrument`` attaches the standard listeners.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import cfws_sync
from cfws_sync import Blob, Response, WebSocket, WebSocketPair

from .jsport import (
    Error, Log, Params, Scope, attempt, describe_data, err_info, fmt_call, js_json, js_number,
    js_typeof, parse_code_reason, utf16_len,
)

Behaviour = Callable[..., Any]


class Url:
    """What the behaviours use of JavaScript's ``URL``: ``pathname`` and ``searchParams``."""

    def __init__(self, href: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(href)
        self.pathname = parts.path or "/"
        self.search_params = Params(parts.query)


def instrument(ws: WebSocket, log: Log, tag: str, *, echo: bool = False,
               size_only: bool = False,
               on_message: Optional[Callable[[Any, int], Any]] = None,
               on_close: Optional[Callable[[Any], Any]] = None,
               on_error: Optional[Callable[[Any], Any]] = None) -> None:
    """Attach the standard listeners; ``echo`` sends each message back (a Blob as bytes)."""
    count = 0

    def opened(event: Any) -> None:
        log.append({"ev": "open", "on": tag, "rs": ws.ready_state})

    def message(event: Any) -> None:
        nonlocal count
        count += 1
        log.append({"ev": "message", "on": tag, "rs": ws.ready_state,
                    **describe_data(event.data)})
        if on_message is not None:
            on_message(event, count)
        if echo:  # a microtask in JavaScript: it runs as soon as this listener returns
            data = event.data
            payload = data.array_buffer() if isinstance(data, Blob) else data
            if size_only:
                size = utf16_len(data) if isinstance(data, str) else (
                    data.size if isinstance(data, Blob) else len(data))
                payload = "size:%d" % size
            try:
                ws.send(payload)
            except Exception as err:
                log.append({"call": "%s.send(echo)" % tag, "threw": err_info(err)})

    def closed(event: Any) -> None:
        log.append({"ev": "close", "on": tag, "rs": ws.ready_state, "code": event.code,
                    "reason": event.reason, "wasClean": event.was_clean})
        if on_close is not None:
            on_close(event)

    def errored(event: Any) -> None:
        log.append({"ev": "error", "on": tag, "rs": ws.ready_state, "message": event.message,
                    "error": err_info(event.error)})
        if on_error is not None:
            on_error(event)

    ws.add_event_listener("open", opened)
    ws.add_event_listener("message", message)
    ws.add_event_listener("close", closed)
    ws.add_event_listener("error", errored)


def _half_open_options(q: Params) -> Optional[dict[str, bool]]:
    return {"allowHalfOpen": q.get("half") == "1"} if q.has("half") else None


def _split_delay(spec: str) -> tuple[str, Optional[str]]:
    """``"ms;code:reason".split(';')`` destructured into ``[ms, spec]``."""
    parts = spec.split(";")
    return parts[0], parts[1] if len(parts) > 1 else None


# -- the behaviours ----------------------------------------------------------------------------

def echo(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Echo server with many knobs."""
    q = url.search_params
    client, server = WebSocketPair()
    if q.has("bt"):
        attempt(log, "server.binaryType = %s" % js_json(q.get("bt")),
                lambda: setattr(server, "binary_type", q.get("bt")))
    log.append({"note": "binaryType before accept", "value": server.binary_type})
    bt_after = q.get("btAfter")  # "N:value"
    scope.serve(server)  # the request lasts while this end is open (RULES B11, H3)

    def on_message(event: Any, n: int) -> None:
        throw_on = q.get("throwOn")
        if throw_on and js_number(throw_on) == n:
            log.append({"note": "throwing from message listener #%d" % n})
            raise Error("boom from message listener")
        if bt_after:
            parts = bt_after.split(":")
            k, value = js_number(parts[0]), parts[1] if len(parts) > 1 else None
            if n == k:
                shown = "undefined" if value is None else js_json(value)
                attempt(log, "server.binaryType = %s" % shown,
                        lambda: setattr(server, "binary_type", value))
                log.append({"note": "binaryType now", "value": server.binary_type})
        if q.get("closeOnMessage"):
            args = parse_code_reason(q.get("closeOnMessage"))
            attempt(log, fmt_call("server.close", args), lambda: server.close(*args))
            log.append({"note": "readyState after close()", "rs": server.ready_state})

    def on_close(event: Any) -> None:
        if q.has("sendInHandler"):
            text = q.get("sendInHandler")
            attempt(log, "server.send(%s) in close handler" % js_json(text),
                    lambda: server.send(text))
        if q.has("closeInHandler"):
            args = parse_code_reason(q.get("closeInHandler"))
            attempt(log, fmt_call("server.close", args) + " in close handler",
                    lambda: server.close(*args))
            log.append({"note": "readyState after close() in handler", "rs": server.ready_state})
        if q.has("closeLater"):
            ms, spec = _split_delay(q.get("closeLater") or "")
            later_args = parse_code_reason(spec)

            def close_later() -> None:
                log.append({"note": "readyState before delayed close", "rs": server.ready_state})
                if q.has("sendLater"):
                    text = q.get("sendLater")
                    attempt(log, "server.send(%s) later" % js_json(text),
                            lambda: server.send(text))
                attempt(log, fmt_call("server.close", later_args) + " later",
                        lambda: server.close(*later_args))
                log.append({"note": "readyState after delayed close()", "rs": server.ready_state})

            scope.set_timeout(close_later, js_number(ms))

        def fifty_ms_later() -> None:
            log.append({"note": "readyState 50ms after close event", "rs": server.ready_state})
            if q.has("sendAfter"):
                attempt(log, 'server.send("late") 50ms after close event',
                        lambda: server.send("late"))

        scope.set_timeout(fifty_ms_later, 50)

    def on_error(event: Any) -> None:
        scope.set_timeout(lambda: log.append(
            {"note": "readyState 50ms after error event", "rs": server.ready_state}), 50)
        if q.has("sendAfter"):
            attempt(log, 'server.send("late") in error handler', lambda: server.send("late"))

    instrument(server, log, "server", echo=q.get("echo") != "0",
               size_only=q.get("sizeOnly") == "1", on_message=on_message,
               on_close=on_close, on_error=on_error)
    opts = _half_open_options(q)
    attempt(log, "server.accept(%s)" % (js_json(opts) if opts else ""),
            lambda: server.accept(opts))
    log.append({"note": "after accept", "rs": server.ready_state,
                "binaryType": server.binary_type})
    if q.has("greet"):
        server.send(q.get("greet"))
    headers = {}
    if q.has("proto"):
        headers["Sec-WebSocket-Protocol"] = q.get("proto") or ""
    return Response(None, status=101, web_socket=client, headers=headers)


def wsclose(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Worker-initiated close right after accept."""
    q = url.search_params
    client, server = WebSocketPair()
    instrument(server, log, "server")
    server.accept(_half_open_options(q))
    if q.has("before"):
        text = q.get("before")
        attempt(log, "server.send(%s)" % js_json(text), lambda: server.send(text))
    args = parse_code_reason(q.get("close"))
    attempt(log, fmt_call("server.close", args), lambda: server.close(*args))
    log.append({"note": "after close()", "rs": server.ready_state})
    attempt(log, 'server.send("after close")', lambda: server.send("after close"))
    attempt(log, fmt_call("server.close", [1000, "second"]) + " (second close)",
            lambda: server.close(1000, "second"))
    log.append({"note": "after second close()", "rs": server.ready_state})
    return Response(None, status=101, web_socket=client)


def sendtypes(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """send() with many argument types; the peer records the frames.

    Where JavaScript passes a value Python has no literal for, the Python counterpart is
    sent: ``{a:1}`` a dict, ``null`` and ``undefined`` None, a typed array a bytearray or a
    memoryview of one, ``Uint16Array`` an ``array('H')``.
    """
    import array

    client, server = WebSocketPair()
    instrument(server, log, "server")
    server.accept()
    u8 = bytearray([1, 2, 3, 4, 5, 6])
    cases: list[tuple[str, Callable[[], Any]]] = [
        ('server.send("str")', lambda: server.send("str")),
        ("server.send(123)", lambda: server.send(123)),
        ("server.send(true)", lambda: server.send(True)),
        ("server.send({a:1})", lambda: server.send({"a": 1})),
        ("server.send(null)", lambda: server.send(None)),
        ("server.send(undefined)", lambda: server.send(None)),
        ("server.send()", lambda: server.send()),
        ("server.send(ArrayBuffer[1,2,3,4,5,6])", lambda: server.send(bytes(u8))),
        ("server.send(Uint8Array[1..6])", lambda: server.send(u8)),
        ("server.send(Uint8Array.subarray(2,4))", lambda: server.send(memoryview(u8)[2:4])),
        ("server.send(DataView(buf,1,2))", lambda: server.send(memoryview(u8)[1:3])),
        ("server.send(Uint16Array[0x0102])", lambda: server.send(array.array("H", [0x0102]))),
        ('server.send(new Blob(["blob"]))', lambda: server.send(Blob(["blob"]))),
        ('server.send("")', lambda: server.send("")),
        ("server.send(new ArrayBuffer(0))", lambda: server.send(b"")),
        ('server.send("\\uD800 lone surrogate")', lambda: server.send("\ud800 lone surrogate")),
    ]
    for label, fn in cases:
        attempt(log, label, fn)
    attempt(log, 'server.close(1000, "done")', lambda: server.close(1000, "done"))
    return Response(None, status=101, web_socket=client)


def latelistener(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Listener attached only after a delay: are early messages lost?"""
    client, server = WebSocketPair()
    scope.serve(server)  # the request lasts while this end is open (RULES B11, H3)
    server.accept()
    server.send("ready")

    def attach() -> None:
        log.append({"note": "attaching listeners now"})
        instrument(server, log, "server", echo=True)

    scope.set_timeout(attach, js_number(url.search_params.get("delay") or "300"))
    return Response(None, status=101, web_socket=client)


def onprops(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """onmessage / onclose attribute handlers.

    In workerd an ``on<type>`` property exists on the object only once assigned (A8), so
    ``'onmessage' in server`` asks whether a handler is set; in Python the property
    always exists, and the same question is ``server.onmessage is not None``.
    """
    client, server = WebSocketPair()
    log.append({"note": "typeof server.onmessage", "value": js_typeof(server.onmessage),
                "inProto": server.onmessage is not None})

    def onmessage(event: Any) -> None:
        log.append({"ev": "message", "via": "onmessage", **describe_data(event.data)})
        server.send("via-onmessage")

    server.onmessage = onmessage
    server.onclose = lambda event: log.append({"ev": "close", "via": "onclose", "code": event.code})
    server.addEventListener("message", lambda event: log.append(
        {"ev": "message", "via": "addEventListener", **describe_data(event.data)}))
    server.addEventListener("close", lambda event: log.append(
        {"ev": "close", "via": "addEventListener", "code": event.code, "rs": server.readyState}))
    server.accept()
    return Response(None, status=101, web_socket=client)


def ret_accepted(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Return a WebSocket that was already accept()ed."""
    client, server = WebSocketPair()
    attempt(log, "client.accept()", lambda: client.accept())

    def construct() -> dict[str, Any]:
        resp = Response(None, status=101, web_socket=client)
        return {"status": resp.status, "hasWebSocket": resp.web_socket is not None}

    attempt(log, "new Response(null, {status:101, webSocket: client})", construct)
    return Response(None, status=101, web_socket=client)


def ret_server(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Return the server end (the one we accepted) instead of the client end."""
    client, server = WebSocketPair()
    server.accept()
    return Response(None, status=101, web_socket=server)


def _constructed(make: Callable[[], Any]) -> Callable[[], str]:
    """``new Response(...) && 'constructed'``."""
    def run() -> str:
        make()
        return "constructed"
    return run


def ret_bad_status(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """101 without webSocket / webSocket with 200."""
    client, server = WebSocketPair()
    server.accept()
    attempt(log, "new Response(null, {status:101})",
            _constructed(lambda: Response(None, status=101)))
    attempt(log, "new Response(null, {status:200, webSocket: client})",
            _constructed(lambda: Response(None, status=200, web_socket=client)))
    attempt(log, 'new Response("body", {status:101, webSocket: client})',
            _constructed(lambda: Response("body", status=101, web_socket=client)))
    return Response(js_json({"done": True}), status=500)


def ret_newws(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Return a ``new WebSocket()`` object in the Response."""
    ws = WebSocket(url.search_params.get("backend") or "")
    instrument(ws, log, "newws")
    return Response(None, status=101, web_socket=ws)


def proxy(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Proxy the peer to a backend WebSocket, coordinating close on both sides (async)."""
    q = url.search_params
    half = q.get("half") == "1"
    mode = q.get("mode") or "fetch"
    backend: Any
    if mode == "fetch":
        resp = cfws_sync.fetch(q.get("backend") or "", headers={"Upgrade": "websocket"})
        log.append({"note": "backend fetch resolved", "status": resp.status,
                    "hasWebSocket": resp.web_socket is not None})
        backend = resp.web_socket
        if q.get("passthrough") == "1":
            # Return the backend socket directly (the runtime pumps both ways).
            return Response(None, status=101, web_socket=backend)
        backend.accept({"allowHalfOpen": half})
    else:
        backend = WebSocket(q.get("backend") or "")
    client, server = WebSocketPair()

    def fwd_close(to: WebSocket, to_tag: str) -> Callable[[Any], None]:
        def forward(event: Any) -> None:
            # Map codes that may not be sent on the wire.
            if event.code == 1005:
                args: list[Any] = []
            elif event.code in (1006, 1015):
                args = [1011, "peer gone"]
            else:
                args = [event.code, event.reason]
            attempt(log, fmt_call("%s.close" % to_tag, args), lambda: to.close(*args))
        return forward

    instrument(server, log, "server",
               on_message=lambda e, n: attempt(log, "backend.send(fwd)",
                                               lambda: backend.send(e.data)),
               on_close=fwd_close(backend, "backend"))
    instrument(backend, log, "backend",
               on_message=lambda e, n: attempt(log, "server.send(fwd)",
                                               lambda: server.send(e.data)),
               on_close=fwd_close(server, "server"))
    server.accept({"allowHalfOpen": half})
    return Response(None, status=101, web_socket=client)


#: name -> (behaviour, is it an ``async`` function in the Worker).
WS_BEHAVIOURS: dict[str, tuple[Behaviour, bool]] = {
    "echo": (echo, False),
    "wsclose": (wsclose, False),
    "sendtypes": (sendtypes, False),
    "latelistener": (latelistener, False),
    "onprops": (onprops, False),
    "ret_accepted": (ret_accepted, False),
    "ret_server": (ret_server, False),
    "ret_bad_status": (ret_bad_status, False),
    "ret_newws": (ret_newws, False),
    "proxy": (proxy, True),
}
