"""``Request``, ``Response`` and ``Headers``, shaped like the Fetch API's (SPEC §1, §5).

A handler receives a :class:`Request` and returns a :class:`Response`.  A 101 response
carrying one end of a :class:`~cfws_sync.WebSocketPair` upgrades the connection.
"""

from __future__ import annotations

import builtins
import functools
import json as _json
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Optional, Union
from urllib.parse import quote

from .blob import Blob
from .errors import RangeError

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["Headers", "Request", "Response"]

HeadersInit = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]], None]
Body = Union[str, bytes, bytearray, memoryview, Blob, None]

_NULL_BODY_STATUSES = (101, 204, 205, 304)
_RANGE = "Responses may only be constructed with status codes in the range 200 to 599, inclusive."
_WS_STATUS = "Responses with a WebSocket must have status code 101."
_NULL_BODY = "Response with null body status (101, 204, 205, or 304) cannot have a body."
_CLONE_101 = "Cannot clone a response to a WebSocket handshake."
# WSGI environ key -> header name, for the names clients send (bounded: names are theirs)
_HEADER_NAMES: dict[str, str] = {}
_HEADER_NAMES_KEPT = 256
# The two headers a WSGI environ holds without the HTTP_ prefix
_CONTENT_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}
_PATH_SAFE = "/:@!$&'()*+,;=~-._%"
# What quote(path, safe=_PATH_SAFE) leaves as it is.
_URL_SAFE = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=~._%-]*\Z").match


class Headers:
    """Case-insensitive HTTP headers; ``get()`` joins repeated values with ``", "``.

    :param init: a mapping, ``(name, value)`` pairs, or another ``Headers``.
    """

    __slots__ = ("_items", "_names", "_environ")

    def __init__(self, init: HeadersInit = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._names: list[str] = []  # the names of ``_items`` lowercased, for lookups
        # A WSGI environ whose headers these are, not yet copied into ``_items``: a
        # handler usually reads a few by name, which a lookup in the environ answers.
        self._environ: Optional[dict[str, Any]] = None
        if init is None:
            return
        pairs = init.items() if isinstance(init, (Mapping, Headers)) else init
        self._extend([(str(name), str(value)) for name, value in pairs])

    @classmethod
    def _of_environ(cls, environ: dict[str, Any]) -> "Headers":
        """The headers of a WSGI request, read from ``environ`` until first changed or
        listed."""
        headers = cls()
        headers._environ = environ
        return headers

    def _copy_environ(self) -> None:
        """Copy the headers out of the environ, before a change or a listing (until
        then ``_items`` is empty: every change copies first)."""
        environ, self._environ = self._environ, None
        if environ is None:
            return
        names = _HEADER_NAMES
        pairs = []
        for key, value in environ.items():
            if key[:5] == "HTTP_":
                name = names.get(key)
                if name is None:
                    name = key[5:].replace("_", "-").title()
                    if len(names) < _HEADER_NAMES_KEPT:
                        names[key] = name
                pairs.append((name, value))
        pairs += [(name, environ[key]) for key, name in _CONTENT_HEADERS.items()
                  if environ.get(key)]
        self._items = [(name, _checked(value if type(value) is str else str(value)))
                       for name, value in pairs]
        self._names = [name.lower() for name, _ in self._items]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of ``name`` (repeated values joined by ``", "``), or ``default``."""
        environ = self._environ
        if environ is not None:
            key = name.upper().replace("-", "_")
            if key not in _CONTENT_HEADERS:  # (for those two, copy the headers first)
                if "_" in name:
                    return default  # no header name read from an environ has one
                value = environ.get("HTTP_" + key)
                if value is None:
                    return default
                return _checked(value if type(value) is str else str(value))
            self._copy_environ()
        key = name.lower()
        names = self._names
        if key not in names:
            return default
        if names.count(key) == 1:
            return self._items[names.index(key)][1]
        return ", ".join([v for k, (_, v) in zip(names, self._items) if k == key])

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        self._copy_environ()
        key = name.lower()
        return [v for k, (_, v) in zip(self._names, self._items) if k == key]

    def has(self, name: str) -> bool:
        """Whether ``name`` is present."""
        return name in self

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``."""
        self.delete(name)
        self.append(name, value)

    def append(self, name: str, value: Any) -> None:
        """Add a value for ``name``."""
        self._extend([(str(name), str(value))])

    def _extend(self, pairs: list[tuple[str, str]]) -> None:
        """Add ``(name, value)`` pairs of ``str``, checked as :meth:`append` does."""
        self._copy_environ()
        _checked("".join([name + value for name, value in pairs]))
        self._items.extend(pairs)
        self._names.extend([name.lower() for name, _ in pairs])

    def delete(self, name: str) -> None:
        """Remove ``name``."""
        self._copy_environ()
        key = name.lower()
        kept = [(k, item) for k, item in zip(self._names, self._items) if k != key]
        self._names = [k for k, _ in kept]
        self._items = [item for _, item in kept]

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs, names lowercased and repeated values joined."""
        return [(k, self.get(k) or "") for k in self.keys()]

    def keys(self) -> list[str]:
        """The distinct names, lowercased, in first-seen order."""
        self._copy_environ()
        seen: dict[str, None] = {}
        for k in self._names:
            seen.setdefault(k, None)
        return list(seen)

    def raw_items(self) -> list[tuple[str, str]]:
        """The pairs as added, names' case kept and repeats kept."""
        self._copy_environ()
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __repr__(self) -> str:
        return "Headers(%r)" % (self.items(),)


def _checked(text: str) -> str:
    """``text``, which is a header name or value; refused with CR, LF or NUL in it."""
    if "\r" in text or "\n" in text or "\0" in text:
        raise TypeError("header names and values must not contain CR, LF or NUL")
    return text


def _body_bytes(body: Body) -> Optional[bytes]:
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, Blob):
        return body.bytes()
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(
        "a body must be str, bytes-like or Blob, not %s (use Response.json() for objects)"
        % type(body).__name__)


class _Body:
    """The synchronous body readers shared by ``Request`` and ``Response``."""

    _body: Optional[builtins.bytes]

    def bytes(self) -> builtins.bytes:
        """The body as ``bytes`` (empty when there is none)."""
        return self._body or b""

    def array_buffer(self) -> builtins.bytes:
        """The body as ``bytes`` (JavaScript's ``arrayBuffer()``)."""
        return self.bytes()

    arrayBuffer = array_buffer

    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.bytes().decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.bytes())

    def blob(self) -> Blob:
        """The body as a :class:`Blob`."""
        return Blob([self.bytes()])


class Request(_Body):
    """An HTTP request, as a handler sees it.

    :param url: the full URL.
    :param method: the HTTP method.
    :param headers: the request headers.
    :param body: the body, if any.
    :param environ: the WSGI environ it was built from, for WSGI code.
    """

    def __init__(self, url: str, method: str = "GET", headers: HeadersInit = None,
                 body: Body = None, environ: Optional[dict[str, Any]] = None) -> None:
        #: The full URL, e.g. ``"http://127.0.0.1:8787/ws?room=a"``.
        self.url = url
        #: The HTTP method.
        self.method = method.upper()
        #: The request headers.
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self._body = _body_bytes(body)
        #: The WSGI environ (``None`` for a request built by hand).
        self.environ = environ

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> "Request":
        """Build the request a WSGI server passed in; the body is read on first use."""
        headers = Headers._of_environ(environ)
        request = cls(_url_of(environ), environ.get("REQUEST_METHOD", "GET"), headers,
                      environ=environ)
        request._body = None
        return request

    def bytes(self) -> bytes:
        """The body as ``bytes``, read from the WSGI input on first use."""
        if self._body is None and self.environ is not None:
            length = self.environ.get("CONTENT_LENGTH") or "0"
            size = int(length) if length.isdigit() else 0
            self._body = self.environ["wsgi.input"].read(size) if size else b""
        return self._body or b""

    def __repr__(self) -> str:
        return "<Request %s %s>" % (self.method, self.url)


def _url_of(environ: dict[str, Any]) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = environ.get("SERVER_PORT", "")
        if port and port != ("443" if scheme == "https" else "80"):
            host += ":" + port
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if not _URL_SAFE(path):  # most paths need no quoting: skip quote()'s work
        path = quote(path, safe=_PATH_SAFE)
    query = environ.get("QUERY_STRING")
    return "%s://%s%s%s" % (scheme, host, path or "/", "?" + query if query else "")


class Response(_Body):
    """An HTTP response, or with ``status=101`` and ``web_socket=`` a WebSocket upgrade.

    :param body: ``str``, bytes-like, :class:`Blob` or ``None``.
    :param status: the status code, 200–599, or 101 with a socket (J3).
    :param headers: response headers; a ``Sec-WebSocket-Protocol`` here is the only way a
        subprotocol is chosen (J7).
    :param status_text: the reason phrase; the standard one by default.
    :param web_socket: a pair end to bind to the connection (alias ``webSocket``).
    :raises RangeError: a status out of range, or a socket without status 101 (J3).
    :raises TypeError: a body with a null-body status (J3).
    """

    def __init__(self, body: Body = None, status: int = 200, headers: HeadersInit = None,
                 status_text: str = "", web_socket: Optional["WebSocket"] = None, *,
                 webSocket: Optional["WebSocket"] = None, statusText: str = "") -> None:
        web_socket = web_socket if web_socket is not None else webSocket
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError("status must be an int, not %s" % type(status).__name__)
        if web_socket is not None:
            if status != 101:
                raise RangeError(_WS_STATUS)
        elif not 200 <= status <= 599:
            raise RangeError(_RANGE)
        if status in _NULL_BODY_STATUSES and body is not None:
            raise TypeError(_NULL_BODY)
        #: The status code.
        self.status = status
        #: The reason phrase.
        self.status_text = status_text or statusText or _reason(status)
        #: The response headers.
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self._body = _body_bytes(body)
        if isinstance(body, str) and "content-type" not in self.headers:
            self.headers.set("Content-Type", "text/plain;charset=UTF-8")
        #: The pair end this response upgrades to, or ``None``.
        self.web_socket = web_socket

    @property
    def webSocket(self) -> Optional["WebSocket"]:
        """Alias of :attr:`web_socket`."""
        return self.web_socket

    @property
    def statusText(self) -> str:
        """Alias of :attr:`status_text`."""
        return self.status_text

    @property
    def ok(self) -> bool:
        """Whether the status is 200–299."""
        return 200 <= self.status <= 299

    def clone(self) -> "Response":
        """A copy; a WebSocket handshake response cannot be cloned (J3)."""
        if self.web_socket is not None:
            raise TypeError(_CLONE_101)
        return Response(self._body, self.status, Headers(self.headers.raw_items()),
                        self.status_text)

    def __repr__(self) -> str:
        return "<Response %d%s>" % (self.status, " web_socket" if self.web_socket else "")


def _json_response(data: Any, status: int = 200, headers: HeadersInit = None) -> Response:
    """A response with ``data`` serialised as JSON (JavaScript's ``Response.json()``)."""
    response = Response(_json.dumps(data), status=status, headers=headers)
    response.headers.set("Content-Type", "application/json")
    return response


class _ClassOrInstance:
    """``Response.json(data)`` builds a response; ``response.json()`` parses the body."""

    def __get__(self, obj: Optional[Response], owner: type) -> Any:
        return _json_response if obj is None else functools.partial(_Body.json, obj)


Response.json = _ClassOrInstance()  # type: ignore[assignment, method-assign]


_REASONS = {int(status): status.phrase for status in HTTPStatus}


def _reason(status: int) -> str:
    return _REASONS.get(status, "")
