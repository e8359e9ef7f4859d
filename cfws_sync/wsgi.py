"""``websocket_app``: a WSGI app that calls a Workers-style handler and serves upgrades.

For a 101 :class:`~cfws_sync.Response` carrying a pair end, the app validates the
handshake (RULES J6), takes the connection's socket from the WSGI server, writes the 101
itself, couples the other end to the connection, and serves it in the request's own
greenlet or thread until the connection ends.  Then it hands the server a response that
writes nothing, so nothing can land in the stream after the WebSocket (SPEC §5).  With
``end_request_at_handshake``, under gevent's pywsgi without a pool, the connection is
served in a greenlet of its own instead, and the request ends at the handshake
(:func:`_leave_pywsgi`).

Taking the socket (:func:`take_socket`): gunicorn exposes it as ``gunicorn.socket``,
Werkzeug as ``werkzeug.socket``, and gevent's pywsgi gives an upgrade request its raw
buffered reader as ``wsgi.input``.  Bytes a client sent right behind the request may
already sit in the server's read-ahead buffer; they are taken too and read first.  The
socket object itself is used (never a ``dup()``), so shutting it down ends the TCP
connection whatever the server does with its own reference.

An idle connection keeps little: pywsgi's reader (and its 8 KiB buffer) is closed once
its read-ahead is taken, the request, the response and the pair end returned in it are
dropped before the connection is served; with ``end_request_at_handshake``, nothing
of pywsgi's request stays.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import logging
import socket
import sys
import time
from typing import Any, Callable, Iterable, Optional, Union

from . import _runtime
from ._connection import Connection, ConnectionOptions
from ._deflate import negotiate_deflate
from ._frames import DEFAULT_MAX_MESSAGE_SIZE, WireCodec
from .compat import Compatibility, _current
from .http import Request, Response

__all__ = ["websocket_app"]

log = logging.getLogger("cfws_sync")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
Handler = Callable[[Request], Response]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Response headers a 101 never carries from the handler: we write our own (RFC 6455
# §4.2.2), and it has no body.
_OURS = frozenset(("upgrade", "connection", "sec-websocket-accept", "sec-websocket-extensions",
                   "content-length", "transfer-encoding"))

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
                 ping_timeout: Optional[float] = None,
                 end_request_at_handshake: bool = False) -> None:
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
        self.end_request_at_handshake = bool(end_request_at_handshake)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        upgrade = (request.headers.get("Upgrade") or "").lower() == "websocket"
        if upgrade:
            refusal = self._refuse_origin(request)
            if refusal is not None:
                return _plain(refusal, start_response)
        # The app's compatibility for the handler's sockets: a greenlet that sets a
        # context variable gets a context of its own, kept as long as the connection,
        # so it is set only when it differs.
        token = _current.set(self.compat) if _current.get() is not self.compat else None
        try:
            with _runtime.in_turn():
                response = self.handler(request)
        except Exception:
            log.exception("handler raised for %s %s", request.method, request.url)
            return _plain(Response("Internal Server Error", status=500), start_response)
        finally:
            if token is not None:
                _current.reset(token)
        if not isinstance(response, Response):
            log.error("handler returned %r, not a cfws_sync.Response", response)
            return _plain(Response("Internal Server Error", status=500), start_response)
        served = self._answer(request, response, environ, start_response,
                              self.end_request_at_handshake)
        del request, response, token  # a connection may last for hours: keep none alive
        return served.run() if isinstance(served, _Serving) else served

    def _refuse_origin(self, request: Request) -> Optional[Response]:
        """The ``allowed_origins`` option: checked before any app code runs."""
        if self.allowed_origins is not None and \
                request.headers.get("Origin") not in self.allowed_origins:
            return _refusal(403, "ERROR: Origin not allowed")
        return None

    def _refuse_handshake(self, request: Request) -> Optional[Response]:
        """J6: checked when the handler answers with a 101, as workerd does (the
        j_bad_handshake trace shows the Worker ran and accepted its end first)."""
        headers = request.headers
        if headers.get("Sec-WebSocket-Version") != "13":
            return _refusal(426, "ERROR: The requested WebSocket version is not supported.",
                            {"Sec-WebSocket-Version": "13"})
        key = headers.get("Sec-WebSocket-Key")
        if not key:
            return _refusal(400, "ERROR: Missing Sec-WebSocket-Key")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:  # RFC 6455 §4.2.1: 16 random bytes, base64-encoded
            return _refusal(400, "ERROR: Invalid Sec-WebSocket-Key")
        return None

    def check_handshake(self, request: Request) -> Optional[Response]:
        """The refusal (403) for an upgrade from an ``Origin`` not allowed, or ``None``.

        For frameworks that run their own views (:mod:`cfws_sync.flask`), before the view;
        the rest of the handshake (J6) is checked by :meth:`serve_response`.
        """
        return self._refuse_origin(request)

    def serve_response(self, request: Request, response: Response, environ: dict[str, Any],
                       start_response: StartResponse) -> Iterable[bytes]:
        """Answer ``request`` with a ``response`` made outside this app (by a framework's
        view, as in :mod:`cfws_sync.flask`): a plain one as HTTP; a 101 one by checking
        the handshake (J2, J6) and serving the connection until it ends.

        :returns: the WSGI result.
        """
        served = self._answer(request, response, environ, start_response)
        del request, response  # a connection may last for hours: keep neither alive
        return served.run() if isinstance(served, _Serving) else served

    def _answer(self, request: Request, response: Response, environ: dict[str, Any],
                start_response: StartResponse,
                leave: bool = False) -> Union[Iterable[bytes], "_Serving"]:
        """A plain response as HTTP; a 101 one checked (J2, J6) and set up to serve
        (``leave``: outside the request's greenlet where the server allows it, as
        :func:`_leave_pywsgi` says)."""
        if response.web_socket is None:
            return _plain(response, start_response)
        if (request.headers.get("Upgrade") or "").lower() != "websocket":
            log.error("TypeError: %s", _NOT_UPGRADE)  # J2
            return _plain(Response("Internal Server Error", status=500), start_response)
        refusal = self._refuse_handshake(request)
        if refusal is not None:
            return _plain(refusal, start_response)
        return self._upgrade(request, response, environ, start_response, leave)

    def _upgrade(self, request: Request, response: Response, environ: dict[str, Any],
                 start_response: StartResponse,
                 leave: bool) -> Union[Iterable[bytes], "_Serving"]:
        """Set up the connection for a 101 ``response``.

        :returns: what serves it (its ``run()`` gives the WSGI result), or the WSGI
            result of a failed upgrade.  The caller drops its own references to
            ``request`` and ``response`` before serving, so that an idle connection
            keeps only what it needs (the pair end returned in the response, once
            coupled, is garbage).
        """
        end = response.web_socket
        assert end is not None
        taken = take_socket(environ)
        if taken is None:
            log.error("this WSGI server does not expose its socket; cannot upgrade")
            return _plain(Response("Internal Server Error", status=500), start_response)
        sock, early = taken
        _release_reader(environ)
        deflate, extension = (None, None)
        if self.compression:
            deflate, extension = negotiate_deflate(request.headers.get("Sec-WebSocket-Extensions"))
        head = self._handshake_head(request, response, extension)
        try:
            partner = end._release()
        except TypeError as exc:  # J4, J5: the 101 goes out, then the connection drops
            log.error("TypeError: %s", exc)
            _send_quietly(sock, head)
            _linger(sock, self.connection_options.close_timeout)
            return ServedUpgrade(start_response)
        left = _leave_pywsgi(start_response, sock) if leave else None
        codec = WireCodec(False, deflate, self.max_message_size)
        connection = Connection(left or sock, partner, codec, self.connection_options)
        _send_quietly(connection.sock, head)  # if it fails, the reader sees a drop
        end._couple(partner, connection, connection.replay)
        return _Serving(connection, early, start_response, left is not None)

    def _handshake_head(self, request: Request, response: Response,
                        extension: Optional[str]) -> bytes:
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade",
                 "Sec-WebSocket-Accept: " + accept_key(request.headers["Sec-WebSocket-Key"])]
        if extension:
            lines.append("Sec-WebSocket-Extensions: " + extension)
        protocol = False
        for name, value in response.headers.raw_items():
            key = name.lower()
            if key in _OURS:
                continue  # we write these (RFC 6455 §4.2.2); a 101 has no body
            protocol = protocol or key == "sec-websocket-protocol"
            lines.append(name + ": " + value)
        if not protocol and self.subprotocols:
            offered = [p.strip() for p in
                       (request.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
            chosen = next((p for p in self.subprotocols if p in offered), None)
            if chosen:
                lines.append("Sec-WebSocket-Protocol: " + chosen)
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")


def websocket_app(handler: Handler, **options: Any) -> WSGIApp:
    """A WSGI app that calls ``handler(request)`` and serves WebSocket upgrades.

    :param handler: ``handler(request) -> Response``, as a Worker's ``fetch``.
    :param compatibility_date: ``"YYYY-MM-DD"``; the newest behaviour by default (SPEC §4).
    :param compatibility_flags: flag names, e.g. ``["web_socket_manual_reply_to_close"]``.
    :param max_message_size: the incoming message limit in bytes (32 MiB, RULES E1).
    :param allowed_origins: if given, upgrades from other ``Origin`` values get 403.
    :param subprotocols: if given, the first of these the client offers is chosen when the
        handler's response names none; by default only what the handler sets is sent (J7).
    :param compression: permessage-deflate on or off; by default as the flags say (N1).
    :param close_timeout: seconds to wait for the answer to our Close before dropping the
        connection (the end then gets ``close`` 1006, SPEC §8.4), and for the peer to
        close TCP after the close handshake; 10 by default.
    :param max_queue: bytes that may wait to be sent to one peer (64 MiB by default).
        ``send()`` never blocks; when a peer reads so slowly that its queue passes this
        bound, the connection is dropped without a Close and the end gets ``close``
        1006 with the reason ``"WebSocket peer too slow: send queue over max_queue
        bytes."``.
    :param ping_interval: seconds between keepalive pings; none by default (as workerd).
    :param ping_timeout: seconds to wait for any data after a ping before the peer is
        dropped (``close`` 1006); ``ping_interval`` by default.
    :param end_request_at_handshake: under gevent's pywsgi with its default spawn (no
        pool), end the WSGI request at the handshake and serve the connection in a
        greenlet of its own, in a copy of the handler's context: an idle connection then
        keeps about 6 KiB less (pywsgi's parked request: its greenlet, handler, headers
        and environ).  Middleware around the app sees the request end at the handshake,
        not when the connection closes.  Off by default, and ignored elsewhere (other
        servers, a pool, a handler subclass, TLS, middleware that wraps
        ``start_response``): there the request lasts the connection.
    :returns: a WSGI callable: the ``__call__`` of a :class:`WebSocketApp`, which a
        server calls as a plain Python function.  (Calling the instance itself would go
        through C, and every parked connection's greenlet would keep that deeper stack:
        about 0.75 KiB each.)
    """
    return WebSocketApp(handler, **options).__call__


def serving_app(app: Any) -> Optional[WebSocketApp]:
    """The :class:`WebSocketApp` behind a WSGI app made by :func:`websocket_app`, or
    ``None``."""
    if isinstance(app, WebSocketApp):
        return app
    owner = getattr(app, "__self__", None)
    return owner if isinstance(owner, WebSocketApp) else None


class ServedUpgrade:
    """The WSGI result after an upgrade: the server must write nothing more.

    By then the connection is closed (or served apart, and no longer the server's).  The
    result reports a ``101`` status (for the server's access log), and its iteration
    raises ``BrokenPipeError``, which gevent's pywsgi, gunicorn and Werkzeug all take as a
    client that went away: they stop there without writing (otherwise gunicorn and pywsgi
    would send a response head of their own, and Werkzeug ``HTTP/1.1 200 OK``), and
    pywsgi reads no next request.
    """

    def __init__(self, start_response: StartResponse) -> None:
        start_response("101 Switching Protocols", [])

    def __iter__(self) -> "ServedUpgrade":
        return self

    def __next__(self) -> bytes:
        raise BrokenPipeError(errno.EPIPE, "the WebSocket connection has ended")


class _Serving:
    """An upgraded connection, ready to be served in the request's greenlet or thread
    (or ``apart``, in a greenlet of its own).

    Small on purpose: it stays alive, as the caller's reference, for as long as the
    connection; and ``run()`` is a method call, which keeps the interpreter from nesting
    (the C stack a parked greenlet keeps is copied to the heap).
    """

    __slots__ = ("connection", "early", "start_response", "apart")

    def __init__(self, connection: Connection, early: bytes,
                 start_response: StartResponse, apart: bool) -> None:
        self.connection = connection
        self.early = early
        self.start_response = start_response
        self.apart = apart

    def run(self) -> Iterable[bytes]:
        """Serve the connection until it ends (or, ``apart``, start serving it in a
        greenlet of its own); returns the WSGI result."""
        if self.apart:
            _runtime.spawn_bare(_serve_apart, self.connection, self.early)
        else:
            self.connection.run(self.early)
        return ServedUpgrade(self.start_response)


def _serve_apart(connection: Connection, early: bytes) -> None:
    """Serve a connection taken from its server (:func:`_leave_pywsgi`): its socket is
    ours to close."""
    try:
        connection.run(early)
    except Exception:  # pragma: no cover - run() handles what the network does
        log.exception("serving a WebSocket connection failed")
    finally:
        connection.sock.close()


def take_socket(environ: dict[str, Any]) -> Optional[tuple[socket.socket, bytes]]:
    """Take the client connection from the WSGI server that runs the app.

    :returns: the socket and the bytes the server already read past the request head
        (a client may send frames right behind it), or ``None`` when the server does
        not expose its socket.
    """
    stream = environ.get("wsgi.input")
    sock = environ.get("gunicorn.socket")
    if sock is not None:  # gunicorn: read-ahead sits in its parser's unreader
        return sock, _gunicorn_read_ahead(stream)
    sock = environ.get("werkzeug.socket")
    if sock is None:  # gevent's pywsgi gives an Upgrade request its raw buffered reader
        sock = getattr(getattr(stream, "raw", None), "_sock", None)
    if sock is None:
        return None
    return sock, _buffered_read_ahead(stream, sock)


def _leave_pywsgi(start_response: StartResponse,
                  sock: socket.socket) -> Optional[socket.socket]:
    """Take ``sock`` from gevent's pywsgi for good, so that the request's greenlet can
    end while the connection is served in a greenlet of its own.

    A parked request greenlet keeps its C stack, pywsgi's handler, the parsed headers and
    the environ: about 6 KiB per idle connection.  Only under a server that spawns a
    greenlet per connection without a pool (a pool's size bounds the connections, and
    stays the bound when they are served in place), only with pywsgi's own handler
    class (a subclass may still use the socket after the request), and only for the
    handler's own plain socket.  Its descriptor moves to a new socket object: what
    pywsgi does with the old one when the request ends (a last read, a close) then
    touches nothing.

    :returns: a socket owning the connection's descriptor, or ``None`` to serve in place.
    """
    pywsgi = sys.modules.get("gevent.pywsgi")
    handler: Any = getattr(start_response, "__self__", None)
    if pywsgi is None or not _runtime.using_gevent() \
            or type(handler) is not pywsgi.WSGIHandler \
            or getattr(handler.server, "pool", True) is not None \
            or handler.socket is not sock or type(sock) is not _runtime.gevent_socket_class():
        return None  # (a TLS socket's state cannot move with its descriptor)
    timeout = sock.gettimeout()
    owned: socket.socket = type(sock)(sock.family, sock.type, sock.proto, sock.detach())
    owned.settimeout(timeout)
    return owned


def _release_reader(environ: dict[str, Any]) -> None:
    """Free gevent pywsgi's reader of an upgraded connection (its 8 KiB buffer would
    stay for as long as the connection lasts), once :func:`take_socket` has taken what
    it held.  Closing a socket's reader leaves the socket open.  Not when the request has
    a body that a handler could still read through it."""
    if "gunicorn.socket" in environ or "werkzeug.socket" in environ:
        return  # their readers are theirs to manage (Werkzeug reads after the result)
    if environ.get("CONTENT_LENGTH") not in (None, "", "0") \
            or "HTTP_TRANSFER_ENCODING" in environ:
        return
    stream = environ.get("wsgi.input")
    if isinstance(stream, io.BufferedReader):
        stream.close()


def _gunicorn_read_ahead(stream: Any) -> bytes:
    unreader = getattr(getattr(stream, "reader", None), "unreader", None)
    if unreader is None:
        return b""
    take = getattr(unreader, "take_buffered", None)
    if take is not None:
        return take()  # type: ignore[no-any-return]
    buf = getattr(unreader, "buf", None)  # older gunicorn: all of ``buf`` is unread
    if buf is None:
        return b""
    data: bytes = buf.getvalue()
    unreader.buf = io.BytesIO()
    return data


def _buffered_read_ahead(stream: Any, sock: socket.socket) -> bytes:
    """What a buffered reader over ``sock`` holds, taken without waiting for more."""
    peek = getattr(stream, "peek", None)
    if peek is None:
        return b""
    raw = getattr(stream, "raw", None)
    if type(raw) is socket.SocketIO and getattr(raw, "_sock", None) is sock:
        # Only the buffer is wanted: a refill of an empty one reads nothing (rather than
        # a failed read of the socket, and its exceptions, on every connection).
        raw._sock = _NOTHING_TO_READ  # type: ignore[attr-defined]
        try:
            data = peek()
        finally:
            raw._sock = sock  # type: ignore[attr-defined]
    else:
        timeout = sock.gettimeout()
        sock.settimeout(0.0)  # peek on an empty buffer would read the socket: make that fail
        try:
            data = peek()
        except OSError:
            data = b""
        finally:
            sock.settimeout(timeout)
    if data:
        stream.read(len(data))
    return data or b""


class _NothingToRead:
    """Stands in for the socket under a reader whose buffer is being emptied."""

    @staticmethod
    def recv_into(buffer: Any, *args: Any) -> int:
        return 0


_NOTHING_TO_READ = _NothingToRead()


def _refusal(status: int, text: str, headers: Optional[dict[str, str]] = None) -> Response:
    response = Response(text, status=status, headers=headers)
    response.headers.set("Content-Type", "text/plain")  # as workerd's refusals (J6)
    response.headers.set("Connection", "close")
    return response


def _plain(response: Response, start_response: StartResponse) -> Iterable[bytes]:
    body = response.bytes()
    headers = [(k, v) for k, v in response.headers.raw_items()
               if k.lower() not in ("content-length", "transfer-encoding")]
    headers.append(("Content-Length", str(len(body))))
    start_response("%d %s" % (response.status, response.status_text), headers)
    return [body]


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sent = sock.send(data)  # a fresh connection's buffer takes a handshake at once
        if sent < len(data):
            sock.sendall(data[sent:])
    except OSError:
        pass


def _linger(sock: socket.socket, timeout: float) -> None:
    """Drop the connection without a Close: FIN, then read (and ignore) until the
    peer closes too, for at most ``timeout`` seconds, so the peer reads EOF."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
