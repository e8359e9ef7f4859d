"""Test an app's WebSockets in memory, without a port, as Flask's ``app.test_client()``.

::

    from cfws_sync.testing import TestClient

    def test_echo():
        client = TestClient(handle)          # a handler, a websocket_app, a Flask app
        with client.websocket("/ws") as ws:
            ws.send("hi")
            assert ws.receive(timeout=1) == "hi"
            ws.close(1000, "done")
        assert ws.close_code == 1000         # the code of the server's answering Close

        assert client.get("/").status == 426

How it works: :meth:`TestClient.websocket` makes a ``socket.socketpair()``, and runs the
app on one side as a WSGI server would, in a greenlet or thread: a WSGI environ for the
upgrade request, with the socket under ``werkzeug.socket`` (the key under which
Werkzeug's server hands out its connection), so the app takes the connection over and
serves it exactly as in production (the handshake checks, the 101, the frames, the close
handshake, the limits).  The other side is a small WebSocket client on wsproto, driven by
the test's own calls: nothing happens on it between calls, except that ``receive()`` and
``close()`` read (and answer pings) while they wait.
"""

from __future__ import annotations

import base64
import collections
import logging
import os
import socket
import threading
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from werkzeug.test import EnvironBuilder

from . import _runtime, client
from .cli import as_wsgi_app
from .events import CloseEvent
from .http import Headers, Response
from .wsgi import accept_key

__all__ = ["TestClient", "TestWebSocket", "HandshakeError", "WebSocketClosed"]

log = logging.getLogger("cfws_sync")
HeadersInit = Union[Mapping[str, str], Iterable[tuple[str, str]], None]

_NULL_BODY = (204, 205, 304)


class HandshakeError(client.HandshakeError):
    """The app answered the upgrade request with something other than 101 (a
    :class:`cfws_sync.HandshakeError`, as from :func:`cfws_sync.connect`).

    :param response: the answer, as a :class:`~cfws_sync.Response`.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response.status, "the WebSocket handshake was answered with "
                         "status %d: %s" % (response.status, response.text()[:200]),
                         response.headers)
        #: The app's answer.
        self.response = response


class WebSocketClosed(client.ConnectionClosed):
    """``receive()`` found the connection closed (a :class:`cfws_sync.ConnectionClosed`,
    as from the script helpers).

    :param code: the code of the server's Close (1005 for an empty one), or 1006 when
        the connection ended without one.
    :param reason: its reason.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(CloseEvent("close", code, reason, code != 1006))


class TestClient:
    """Requests and WebSockets to an app, in memory.

    :param app: a handler (``handler(request) -> Response``), a
        :func:`~cfws_sync.websocket_app`, a Flask app under
        :class:`cfws_sync.flask.WebSockets`, or any WSGI app.
    :param options: :func:`~cfws_sync.websocket_app` options, for a handler.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, app: Any, **options: Any) -> None:
        #: The WSGI app under test.
        self.app = as_wsgi_app(app, **options)

    def request(self, method: str, path: str = "/", headers: HeadersInit = None,
                body: Union[str, bytes, None] = None) -> Response:
        """Send a plain HTTP request; the app runs in the calling thread.

        :param method: ``"GET"``, ``"POST"``…
        :param path: the path, with a query string if any.
        :param headers: request headers.
        :param body: the request body.
        :returns: the app's answer, as a :class:`~cfws_sync.Response`.
        """
        environ = _environ(method, path, Headers(headers), body)
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Any:
            started[:] = [(status, headers)]
            return lambda data: chunks.append(data)

        chunks: list[bytes] = []
        result = self.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the app did not call start_response()")
        return _response(started[0][0], started[0][1], b"".join(chunks))

    def get(self, path: str = "/", headers: HeadersInit = None) -> Response:
        """``request("GET", path, headers)``."""
        return self.request("GET", path, headers)

    def websocket(self, path: str = "/", headers: HeadersInit = None,
                  protocols: Optional[Sequence[str]] = None, compression: bool = False,
                  timeout: float = 5.0) -> "TestWebSocket":
        """Open a WebSocket to the app; use it in a ``with`` block, which closes it.

        :param path: the path, with a query string if any.
        :param headers: extra request headers; they replace the handshake's own ones of
            the same name (to test a bad handshake, say).
        :param protocols: subprotocols to offer.
        :param compression: offer permessage-deflate.
        :param timeout: seconds to wait for the handshake, and the default wait of
            ``receive()`` and ``close()``.
        :returns: the open socket.
        :raises HandshakeError: when the app does not answer 101.
        :raises TimeoutError: when it does not answer in time.
        """
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request_headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                   ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")])
        if protocols:
            request_headers.set("Sec-WebSocket-Protocol", ", ".join(protocols))
        deflate = PerMessageDeflate() if compression else None
        if deflate is not None:
            offer = deflate.offer()
            request_headers.set("Sec-WebSocket-Extensions", deflate.name if offer is True
                                else "%s; %s" % (deflate.name, offer))
        for name, value in Headers(headers).raw_items():
            request_headers.set(name, value)
        ours, theirs = socket.socketpair()
        environ = _environ("GET", path, request_headers, None)
        environ["werkzeug.socket"] = theirs
        done = threading.Event()
        _runtime.spawn(_serve_one, self.app, environ, theirs, done)
        try:
            return TestWebSocket(ours, key, deflate, timeout, done)
        except BaseException:
            ours.close()
            done.wait(timeout)
            raise


class TestWebSocket:
    """The client end of a WebSocket opened by :meth:`TestClient.websocket`."""

    __test__ = False

    def __init__(self, sock: socket.socket, key: str, deflate: Optional[PerMessageDeflate],
                 timeout: float, done: threading.Event) -> None:
        self._sock = sock
        self._timeout = timeout
        self._done = done
        self._messages: collections.deque[Union[str, bytes]] = collections.deque()
        self._text: list[str] = []
        self._binary: list[bytes] = []
        #: The code of the server's Close frame (1005 if it had none, 1006 if the
        #: connection ended without one); ``None`` while open.
        self.close_code: Optional[int] = None
        #: The reason in the server's Close frame.
        self.close_reason = ""
        status, headers, rest = self._read_head(timeout)
        #: The headers of the server's 101 response.
        self.response_headers = headers
        if status != 101:
            raise HandshakeError(_response(str(status), headers.raw_items(),
                                           rest + self._read_to_end()))
        if headers.get("Sec-WebSocket-Accept") != accept_key(key):
            raise HandshakeError(Response("bad Sec-WebSocket-Accept", status=500))
        #: The subprotocol the server chose, or ``None``.
        self.subprotocol = headers.get("Sec-WebSocket-Protocol")
        extensions: list[Extension] = []
        accepted = headers.get("Sec-WebSocket-Extensions")
        if deflate is not None and accepted and accepted.startswith(deflate.name):
            deflate.finalize(accepted)
            extensions.append(deflate)
        self._ws = Connection(ConnectionType.CLIENT, extensions)
        self._feed(rest)

    # -- the API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the server's Close (or the end of the connection) was seen."""
        return self.close_code is not None

    def send(self, data: Union[str, bytes, bytearray, memoryview]) -> None:
        """Send a text (``str``) or binary message."""
        if isinstance(data, str):
            self._write(TextMessage(data=data))
        else:
            self._write(BytesMessage(data=bytes(data)))

    def receive(self, timeout: Optional[float] = None) -> Union[str, bytes]:
        """The next message: ``str`` for text, ``bytes`` for binary.

        :param timeout: seconds to wait; the client's timeout by default.
        :raises WebSocketClosed: the connection closed before a message came.
        :raises TimeoutError: no message in time.
        """
        self._wait(lambda: bool(self._messages), timeout)
        if self._messages:
            return self._messages.popleft()
        assert self.close_code is not None
        raise WebSocketClosed(self.close_code, self.close_reason)

    def close(self, code: Optional[int] = 1000, reason: str = "",
              timeout: Optional[float] = None) -> None:
        """Send a Close and wait for the server's (whose code becomes :attr:`close_code`).

        Messages that arrive meanwhile stay readable with ``receive()``.

        :param code: the close code; ``None`` sends an empty Close.
        :param reason: the close reason.
        :param timeout: seconds to wait for the server's Close; then the connection is
            dropped and :attr:`close_code` is 1006.
        """
        if self._ws.state is ConnectionState.OPEN:
            empty = CloseReason.NO_STATUS_RCVD  # wsproto's way to send a Close without a code
            self._write(CloseConnection(code=empty if code is None else code, reason=reason))
        try:
            self.wait_closed(timeout)
        except TimeoutError:
            self._ended()

    def wait_closed(self, timeout: Optional[float] = None) -> int:
        """Wait for the server's Close; returns :attr:`close_code`.

        :raises TimeoutError: the connection did not close in time.
        """
        self._wait(lambda: False, timeout)
        assert self.close_code is not None
        return self.close_code

    def __enter__(self) -> "TestWebSocket":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.closed:
            self.close()
        self._ended()
        self._done.wait(self._timeout)  # the app has finished serving the connection

    # -- the wire ---------------------------------------------------------------------------

    def _read_head(self, timeout: float) -> tuple[int, Headers, bytes]:
        data = b""
        self._sock.settimeout(timeout)
        while b"\r\n\r\n" not in data:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no answer to the WebSocket handshake in %ss" % timeout)
            if not chunk:
                raise HandshakeError(Response("the app closed the connection without an "
                                              "answer", status=502))
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = Headers()
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers.append(name.strip(), value.strip())
        return int(lines[0].split()[1]), headers, rest

    def _read_to_end(self) -> bytes:
        data = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return data
            if not chunk:
                return data
            data += chunk

    def _write(self, event: Any) -> None:
        try:
            self._sock.sendall(self._ws.send(event))
        except OSError:
            self._ended()

    def _wait(self, ready: Any, timeout: Optional[float]) -> None:
        """Read until ``ready()`` or the connection closes."""
        timeout = self._timeout if timeout is None else timeout
        self._sock.settimeout(timeout)
        while not ready() and self.close_code is None:
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("nothing from the WebSocket in %ss" % timeout) from None
            except OSError:
                data = b""
            if not data:
                self._ended()
                return
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self._messages.append("".join(self._text))
                    self._text = []
            elif isinstance(event, BytesMessage):
                self._binary.append(bytes(event.data))
                if event.message_finished:
                    self._messages.append(b"".join(self._binary))
                    self._binary = []
            elif isinstance(event, Ping):
                self._write(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._write(event.response())  # RFC 6455 §5.5.1: answer with its code
                self.close_code, self.close_reason = int(event.code), event.reason or ""

    def _ended(self) -> None:
        if self.close_code is None:
            self.close_code = 1006  # RFC 6455 §7.1.5: closed without a Close frame
        try:
            self._sock.close()
        except OSError:
            pass


def _environ(method: str, path: str, headers: Headers, body: Union[str, bytes, None]
             ) -> dict[str, Any]:
    builder = EnvironBuilder(path=path, method=method, base_url="http://localhost",
                             headers=headers.raw_items(), data=body)
    try:
        environ: dict[str, Any] = builder.get_environ()
    finally:
        builder.close()
    environ.setdefault("REMOTE_ADDR", "127.0.0.1")
    environ.setdefault("REMOTE_PORT", "0")
    return environ


def _response(status: str, headers: Iterable[tuple[str, str]], body: bytes) -> Response:
    code, _, text = status.partition(" ")
    number = int(code)
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return Response(None if number in _NULL_BODY else body, status=number, headers=kept,
                    status_text=text)


def _serve_one(app: Any, environ: dict[str, Any], sock: socket.socket,
               done: threading.Event) -> None:
    """Answer one request on ``sock`` as a WSGI server would; then close it."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [(status, headers)]
        return lambda data: body.append(data)

    body: list[bytes] = []
    try:
        result = app(environ, start_response)
        try:
            body.extend(result)
        except ConnectionError:
            pass  # after an upgrade: the connection has ended, nothing more to write
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started[0] if started else ("500 Internal Server Error", [])
        if not status.startswith("101"):  # after a 101, the app wrote everything itself
            _send_plain(sock, status, headers, b"".join(body))
    except Exception:
        log.exception("the app raised while serving %s", environ.get("PATH_INFO"))
        _send_plain(sock, "500 Internal Server Error", [], b"")
    finally:
        sock.close()
        done.set()


def _send_plain(sock: socket.socket, status: str, headers: list[tuple[str, str]],
                body: bytes) -> None:
    lines = ["HTTP/1.1 " + status]
    lines += ["%s: %s" % (k, v) for k, v in headers if k.lower() != "content-length"]
    lines.append("Content-Length: %d" % len(body))
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    except OSError:
        pass
