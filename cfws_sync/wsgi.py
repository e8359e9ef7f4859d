"""``websocket_app``: a WSGI app that calls a Workers-style handler and serves upgrades.

For a 101 :class:`~cfws_sync.Response` carrying a pair end, the app validates the
handshake (RULES J6), takes the connection's socket from the WSGI server, writes the 101
itself, couples the other end to the connection, and serves it in the request's own
greenlet or thread until the connection ends.  Then it hands the server a response that
writes nothing, so nothing can land in the stream after the WebSocket (SPEC §5).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from typing import Any, Callable, Iterable, Optional

from . import _runtime
from ._connection import Connection, ConnectionOptions
from ._frames import DEFAULT_MAX_MESSAGE_SIZE, WireCodec, negotiate_deflate
from .compat import Compatibility, _current
from .http import Headers, Request, Response

__all__ = ["websocket_app"]

log = logging.getLogger("cfws_sync")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
Handler = Callable[[Request], Response]
StartResponse = Callable[..., Any]

_NOT_UPGRADE = (  # J2
    'Worker tried to return a WebSocket in a response to a request which did not contain '
    'the header "Upgrade: websocket".')


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


class WebSocketApp:
    """The WSGI callable :func:`websocket_app` returns; see there for the options."""

    def __init__(self, handler: Handler, *, compatibility_date: Optional[str] = None,
                 compatibility_flags: Iterable[str] = (),
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 allowed_origins: Optional[Iterable[str]] = None,
                 subprotocols: Optional[Iterable[str]] = None,
                 compression: Optional[bool] = None, close_timeout: float = 10.0,
                 max_queue: int = 64 << 20, ping_interval: Optional[float] = None,
                 ping_timeout: Optional[float] = None) -> None:
        if not callable(handler):
            raise TypeError("handler must be callable: handler(request) -> Response")
        if isinstance(max_message_size, bool) or not isinstance(max_message_size, int) \
                or max_message_size <= 0:
            raise ValueError("max_message_size must be a positive int")
        self.handler = handler
        self.compat = Compatibility.resolve(compatibility_date, compatibility_flags)
        self.max_message_size = max_message_size
        self.allowed_origins = None if allowed_origins is None else set(allowed_origins)
        self.subprotocols = None if subprotocols is None else list(subprotocols)
        self.compression = self.compat.compression if compression is None else compression
        self.connection_options = ConnectionOptions(close_timeout, max_queue,
                                                    ping_interval, ping_timeout)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        upgrade = (request.headers.get("Upgrade") or "").lower() == "websocket"
        if upgrade:
            refusal = self._refuse_handshake(request)
            if refusal is not None:
                return _plain(refusal, start_response)
        token = _current.set(self.compat)
        try:
            with _runtime.in_turn():
                response = self.handler(request)
        except Exception:
            log.exception("handler raised for %s %s", request.method, request.url)
            return _plain(Response("Internal Server Error", status=500), start_response)
        finally:
            _current.reset(token)
        if not isinstance(response, Response):
            log.error("handler returned %r, not a cfws_sync.Response", response)
            return _plain(Response("Internal Server Error", status=500), start_response)
        if response.web_socket is None:
            return _plain(response, start_response)
        if not upgrade:
            log.error("TypeError: %s", _NOT_UPGRADE)  # J2
            return _plain(Response("Internal Server Error", status=500), start_response)
        return self._upgrade(request, response, environ, start_response)

    def _refuse_handshake(self, request: Request) -> Optional[Response]:
        """J6, and the Origin allow-list: answered before the handler runs."""
        headers = request.headers
        if headers.get("Sec-WebSocket-Version") != "13":
            return Response("ERROR: The requested WebSocket version is not supported.",
                            status=426, headers={"Sec-WebSocket-Version": "13"})
        key = headers.get("Sec-WebSocket-Key")
        if not key:
            return Response("ERROR: Missing Sec-WebSocket-Key", status=400)
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:
            return Response("ERROR: Invalid Sec-WebSocket-Key", status=400)
        if self.allowed_origins is not None and headers.get("Origin") not in self.allowed_origins:
            return Response("ERROR: Origin not allowed", status=403)
        return None

    def _upgrade(self, request: Request, response: Response, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        end = response.web_socket
        assert end is not None
        sock = take_socket(environ)
        if sock is None:
            log.error("this WSGI server does not expose its socket; cannot upgrade")
            return _plain(Response("Internal Server Error", status=500), start_response)
        deflate, extension = (None, None)
        if self.compression:
            deflate, extension = negotiate_deflate(request.headers.get("Sec-WebSocket-Extensions"))
        head = self._handshake_head(request, response, extension)
        try:
            partner = end._release()
        except TypeError as exc:  # J4, J5: the 101 goes out, then the connection drops
            _send_quietly(sock, head)
            log.error("TypeError: %s", exc)
            _shutdown(sock)
            return ServedUpgrade(environ)
        codec = WireCodec(False, deflate, self.max_message_size)
        connection = Connection(sock, partner, codec, self.connection_options)
        try:
            sock.sendall(head)
        except OSError:
            pass  # the reader sees the dead socket and reports the drop
        end._couple(partner, connection, connection.replay)
        connection.run()
        return ServedUpgrade(environ)

    def _handshake_head(self, request: Request, response: Response,
                        extension: Optional[str]) -> bytes:
        headers = Headers(response.headers.raw_items())
        for name in ("Upgrade", "Connection", "Sec-WebSocket-Accept",
                     "Sec-WebSocket-Extensions", "Content-Length", "Transfer-Encoding"):
            headers.delete(name)
        if "sec-websocket-protocol" not in headers and self.subprotocols:
            offered = [p.strip() for p in
                       (request.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
            chosen = next((p for p in self.subprotocols if p in offered), None)
            if chosen:
                headers.set("Sec-WebSocket-Protocol", chosen)
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade",
                 "Sec-WebSocket-Accept: " + accept_key(request.headers["Sec-WebSocket-Key"])]
        if extension:
            lines.append("Sec-WebSocket-Extensions: " + extension)
        lines.extend("%s: %s" % pair for pair in headers.raw_items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def websocket_app(handler: Handler, **options: Any) -> WebSocketApp:
    """A WSGI app that calls ``handler(request)`` and serves WebSocket upgrades.

    :param handler: ``handler(request) -> Response``, as a Worker's ``fetch``.
    :param compatibility_date: ``"YYYY-MM-DD"``; the newest behaviour by default (SPEC §4).
    :param compatibility_flags: flag names, e.g. ``["web_socket_manual_reply_to_close"]``.
    :param max_message_size: the incoming message limit in bytes (32 MiB, RULES E1).
    :param allowed_origins: if given, upgrades from other ``Origin`` values get 403.
    :param subprotocols: if given, the first of these the client offers is chosen when the
        handler's response names none; by default only what the handler sets is sent (J7).
    :param compression: permessage-deflate on or off; by default as the flags say (N1).
    :param close_timeout: seconds to wait for the answer to our Close (SPEC §8.4).
    :param max_queue: bytes that may wait to be sent to one peer before it is dropped.
    :param ping_interval: seconds between keepalive pings; none by default.
    :param ping_timeout: seconds without a reply before the peer is dropped.
    :returns: a WSGI callable.
    """
    return WebSocketApp(handler, **options)


class ServedUpgrade:
    """The WSGI result after an upgrade: writes nothing, and tells the server so.

    Werkzeug's server would otherwise write ``HTTP/1.1 200 OK`` into the closed stream,
    so there iteration raises ``ConnectionError``, which it treats as a dropped client.
    """

    def __init__(self, environ: dict[str, Any]) -> None:
        self._werkzeug = "werkzeug.socket" in environ

    def __iter__(self) -> "ServedUpgrade":
        return self

    def __next__(self) -> bytes:
        if self._werkzeug:
            raise ConnectionError("WebSocket connection ended")
        raise StopIteration


def take_socket(environ: dict[str, Any]) -> Optional[socket.socket]:
    """The client connection's socket, from whichever WSGI server runs the app."""
    for key in ("gunicorn.socket", "werkzeug.socket"):
        if key in environ:
            return environ[key]  # type: ignore[no-any-return]
    stream = environ.get("wsgi.input")
    raw = getattr(getattr(stream, "raw", None), "_sock", None)  # gevent pywsgi's rfile
    if raw is None:
        raw = getattr(getattr(getattr(stream, "rfile", None), "raw", None), "_sock", None)
    return raw  # type: ignore[no-any-return]


def _plain(response: Response, start_response: StartResponse) -> Iterable[bytes]:
    body = response.bytes()
    headers = [(k, v) for k, v in response.headers.raw_items()
               if k.lower() not in ("content-length", "transfer-encoding")]
    headers.append(("Content-Length", str(len(body))))
    start_response("%d %s" % (response.status, response.status_text), headers)
    return [body]


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
