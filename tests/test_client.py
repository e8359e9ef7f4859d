"""``WebSocket(url)`` and ``connect()`` against independent servers (RULES K1–K8, E6, H1).

The servers: a raw scripted backend written here from RFC 6455 (it checks masking and
records every frame and header), the ``websockets`` library's server, simple-websocket's
``Server`` in a Werkzeug app, and our own ``websocket_app`` on every server of the matrix.
The helpers at the top are shared with the other client test modules.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple, Optional

import pytest

from cfws_sync import (ConnectError, ConnectTimeout, DOMException, HandshakeError, NetworkError,
                       WebSocket, _runtime, connect)
from cfws_sync.errors import SEND_BEFORE_ACCEPT
from tests.corekit import build_frame
from tests.servers import SERVER_KINDS, Server, free_port, server_command, wait_for_port

TIMEOUT = 5.0  # seconds any single wait may take
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10
NETWORK_LOST = "Uncaught Error: Network connection lost."
CONNECT_FAILED = "Failed to establish websocket connection"
NOT_101 = ("Failed to establish the WebSocket connection: expected server to reply with "
           "HTTP status code 101 (switching protocols), but received %d instead.")


# -- a recorder of what a socket dispatches ---------------------------------------------------


class Seen(NamedTuple):
    type: str
    rs: int  # ready_state during dispatch
    detail: Any  # message data, (code, reason, was_clean), or the error message


class Recorder:
    """Records every event of one socket, with ``ready_state`` at dispatch."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seen: list[Seen] = []
        self.errors: list[Any] = []
        self.cond = threading.Condition()
        for kind in ("open", "message", "close", "error"):
            ws.add_event_listener(kind, self._record)

    def _record(self, event: Any) -> None:
        if event.type == "message":
            detail = event.data
        elif event.type == "close":
            detail = (event.code, event.reason, event.was_clean)
        elif event.type == "error":
            detail = event.message
            self.errors.append(event.error)
        else:
            detail = None
        with self.cond:
            self.seen.append(Seen(event.type, self.ws.ready_state, detail))
            self.cond.notify_all()

    def wait(self, predicate: Callable[[list[Seen]], bool], timeout: float = TIMEOUT) -> list[Seen]:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.seen), timeout), self.seen
            return list(self.seen)

    def wait_type(self, kind: str, timeout: float = TIMEOUT) -> Seen:
        seen = self.wait(lambda s: any(e.type == kind for e in s), timeout)
        return next(e for e in seen if e.type == kind)

    def types(self) -> list[str]:
        with self.cond:
            return [e.type for e in self.seen]


def watched(url: str, *args: Any, **options: Any) -> tuple[WebSocket, Recorder]:
    """``WebSocket(url)`` and its recorder, made in one turn as a Worker would."""
    with _runtime.in_turn():
        ws = WebSocket(url, *args, **options)
        return ws, Recorder(ws)


# -- a raw scripted backend ---------------------------------------------------------------------


class Frame(NamedTuple):
    opcode: int
    payload: bytes
    fin: bool
    rsv: int
    masked: bool

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    @property
    def close(self) -> tuple[Optional[int], str]:
        if len(self.payload) < 2:
            return None, ""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:].decode("utf-8")


class BackendConn:
    """One accepted connection of :class:`RawBackend`, driven by the test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.method = self.path = ""
        self.headers: dict[str, str] = {}

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("the client sent nothing in time") from None
        if not chunk:
            raise EOFError("the client closed TCP")
        self.buf += chunk

    def read_request(self, timeout: float = TIMEOUT) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.path, _ = lines[0].split(" ")
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.headers

    def accept(self, protocol: Optional[str] = None, extensions: Optional[str] = None,
               accept: Optional[str] = None, upgrade: str = "websocket") -> None:
        key = self.headers["sec-websocket-key"]
        if accept is None:
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: " + upgrade,
                 "Connection: Upgrade", "Sec-WebSocket-Accept: " + accept]
        if protocol:
            lines.append("Sec-WebSocket-Protocol: " + protocol)
        if extensions:
            lines.append("Sec-WebSocket-Extensions: " + extensions)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def respond(self, status: int, body: bytes = b"", headers: tuple[str, ...] = ()) -> None:
        lines = ["HTTP/1.1 %d Whatever" % status, "Content-Length: %d" % len(body),
                 "Connection: close", *headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    #: Set for a client: its frames are masked (RFC 6455 §5.3).
    masked = False

    def send(self, opcode: int, payload: bytes = b"", **options: Any) -> None:
        self.sock.sendall(build_frame(opcode, payload, mask=self.masked, **options))

    def text(self, text: str) -> None:
        self.send(TEXT, text.encode())

    def close(self, code: Optional[int] = None, reason: str = "") -> None:
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
        self.send(CLOSE, payload)

    def recv(self, timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        while len(self.buf) < 2:
            self._fill(deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n, at = b1 & 0x7F, 2
        if n >= 126:
            size = 2 if n == 126 else 8
            while len(self.buf) < 2 + size:
                self._fill(deadline)
            n = int.from_bytes(self.buf[2:2 + size], "big")
            at += size
        masked = bool(b1 & 0x80)
        end = at + (4 if masked else 0) + n
        while len(self.buf) < end:
            self._fill(deadline)
        payload = self.buf[end - n:end]
        if masked:
            key = self.buf[at:at + 4]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.buf = self.buf[end:]
        return Frame(b0 & 0x0F, payload, bool(b0 & 0x80), (b0 >> 4) & 7, masked)

    def expect_eof(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with pytest.raises(EOFError):
            while True:
                self._fill(deadline)

    def expect_silence(self, seconds: float) -> None:
        """Nothing arrives (no frame, no EOF) for ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        raise AssertionError("expected silence, got %r" % (data[:40],))

    def drop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class RawBackend:
    """A listening socket; the test takes each connection with :meth:`next`."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.conns: list[BackendConn] = []

    def url(self, path: str = "/backend", scheme: str = "ws") -> str:
        return "%s://127.0.0.1:%d%s" % (scheme, self.port, path)

    def next(self, timeout: float = TIMEOUT) -> BackendConn:
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        conn = BackendConn(sock)
        self.conns.append(conn)
        return conn

    def no_connection(self, seconds: float) -> bool:
        self.listener.settimeout(seconds)
        try:
            sock, _ = self.listener.accept()
        except socket.timeout:
            return True
        sock.close()
        return False

    def upgrade(self, timeout: float = TIMEOUT, **accept: Any) -> BackendConn:
        conn = self.next(timeout)
        conn.read_request(timeout)
        conn.accept(**accept)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.sock.close()
        self.listener.close()


@pytest.fixture
def backend() -> Iterator[RawBackend]:
    server = RawBackend()
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the websockets library's server, in its own process -------------------------------------

_WS_SERVER = r"""
import json, ssl, sys
from websockets.sync.server import serve

port, spec = int(sys.argv[1]), json.loads(sys.argv[2])

def handler(conn):
    try:
        if spec["kind"] == "echo":
            for message in conn:
                conn.send(message)
        elif spec["kind"] == "commands":  # echo, except for a few commands
            for message in conn:
                if message == "binary":
                    conn.send(bytes([0, 1, 255]))
                elif message == "big":
                    conn.send(bytes(1000))
                elif message == "headers":
                    conn.send(json.dumps(dict(conn.request.headers.raw_items())))
                elif message == "close":
                    conn.close(4000, "server bye")
                else:
                    conn.send(message)
        else:  # "send": these messages at once, then close
            for message in spec["messages"]:
                conn.send(message)
            conn.close(*spec["close"])
    except Exception:
        pass

context = None
if spec.get("pem"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(spec["pem"])
with serve(handler, "127.0.0.1", port, ssl=context,
           subprotocols=spec.get("subprotocols")) as server:
    server.serve_forever()
"""
#: A ``websockets`` server that echoes every message.
ECHO: dict[str, Any] = {"kind": "echo"}
#: One that echoes, but answers ``binary`` (3 bytes), ``big`` (1000 bytes), ``headers``
#: (the request headers as JSON) and ``close`` (Close 4000 "server bye").
COMMANDS: dict[str, Any] = {"kind": "commands"}


def sender(messages: list[str], then_close: tuple = (1000, "that is all")) -> dict[str, Any]:
    """A ``websockets`` server that sends ``messages`` on connect, then closes."""
    return {"kind": "send", "messages": messages, "close": list(then_close)}


@contextlib.contextmanager
def ws_server(spec: dict[str, Any], pem: Optional[str] = None,
              subprotocols: Optional[list[str]] = None) -> Iterator[str]:
    """Run a ``websockets`` server in its own process; yield its ws:// (or wss://) URL.

    (In this process under gevent, its server has left gevent's descriptor watchers in
    a state where later sockets never became readable, or libev aborted.)
    """
    import json

    port = free_port()
    spec = dict(spec, pem=pem, subprotocols=subprotocols)
    with open(os.devnull, "wb") as devnull:
        proc = Spawned([sys.executable, "-c", _WS_SERVER, str(port), json.dumps(spec)],
                       stdout=devnull.fileno(), stderr=devnull.fileno())
    try:
        wait_for_port(port, proc)  # type: ignore[arg-type]
        yield "%s://127.0.0.1:%d/" % ("wss" if pem else "ws", port)
    finally:
        proc.stop()


def raw_client(port: int, path: str = "/", timeout: float = TIMEOUT) -> BackendConn:
    """A raw client (independent of cfws_sync): the upgrade, then frames by hand."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return _handshake(sock, port, path, timeout)
    except BaseException:
        sock.close()
        raise


def _handshake(sock: socket.socket, port: int, path: str, timeout: float) -> BackendConn:
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)).encode())
    conn = BackendConn(sock)
    conn.masked = True
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in conn.buf:
        conn._fill(deadline)
    head, _, conn.buf = conn.buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), head
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    assert headers.get("sec-websocket-accept") == accept, head
    return conn


class Spawned:
    """A process started with ``os.posix_spawn``: no Python-level fork.

    Under gevent, a fork re-registers every watched descriptor; when another greenlet is
    closing a socket at that moment, libev aborts the whole process (``epoll_modify:
    ... invalid fd``, seen in this suite), and gevent's ``subprocess`` always forks.
    Waits poll with a short sleep, which yields under gevent.

    :param stdin, stdout, stderr: file descriptors for the child, or ``None`` to share ours.
    """

    def __init__(self, args: list[str], env: Optional[dict[str, str]] = None,
                 stdin: Optional[int] = None, stdout: Optional[int] = None,
                 stderr: Optional[int] = None) -> None:
        environment = dict(env or os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        actions = [(os.POSIX_SPAWN_DUP2, fd, target)
                   for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)) if fd is not None]
        self.pid = os.posix_spawn(args[0], args, environment, file_actions=actions)
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within :data:`TIMEOUT`."""
        self.send_signal(signal.SIGTERM)
        try:
            self.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.wait(TIMEOUT)


@contextlib.contextmanager
def server_process(kind: str, app: str, env: Optional[dict[str, str]] = None) -> Iterator[Any]:
    """Run ``app`` on server ``kind`` in its own process (as ``running_server`` does, but
    started by :class:`Spawned`); yield a :class:`tests.servers.Server`."""
    port = free_port()
    with open(os.devnull, "wb") as devnull:
        proc = Spawned(server_command(kind, app, port), dict(os.environ, **(env or {})),
                       stdout=devnull.fileno(), stderr=devnull.fileno())
    try:
        wait_for_port(port, proc)  # type: ignore[arg-type]
        yield Server(kind, port, proc)  # type: ignore[arg-type]
    finally:
        proc.stop()


#: A self-signed certificate and key for 127.0.0.1, valid for a century (test data).
TEST_PEM = """\
-----BEGIN CERTIFICATE-----
MIIDHDCCAgSgAwIBAgIUdrqnQJ4hzpeTp1Pxgik6sSvw9bswDQYJKoZIhvcNAQEL
BQAwFDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyMTIyNDA0NloYDzIxMjYx
MDI4MjI0MDQ2WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwggEiMA0GCSqGSIb3DQEB
AQUAA4IBDwAwggEKAoIBAQC3ZybUYvGQhnGdJ67drgPLMtqG+mjWM0/mc3cP7Riz
F5Mj/O4XXCNN25qNpAsFAwgtffGEWrEZMPq0UPcmcS+AqSMudlp5ZzFez86CHfyf
+WGOruFDDrIEqWo9nwMf+/DseUSckBYvJdqdw89HAQp+JiHcF9MkZAIgo+RP5WF5
uYW1aC/OhP4Q5QZt/i25M/fVZ6S0kYdwp7W77m9xsu5BaTP6VgI6oz6Pc2vMjoOX
3UYRVBtJNnF9j03zd+FSWMBikt2NPj+WO52J+w6VwaPLQXTXbPwh6BHlg1Qi14Mp
VKUFKVqPS+E91olnlp7M8Y5PTtblXSNuuAdZixDnP49tAgMBAAGjZDBiMB0GA1Ud
DgQWBBSbK24K+ZYDybDClC/rLPj30Lc9izAfBgNVHSMEGDAWgBSbK24K+ZYDybDC
lC/rLPj30Lc9izAPBgNVHRMBAf8EBTADAQH/MA8GA1UdEQQIMAaHBH8AAAEwDQYJ
KoZIhvcNAQELBQADggEBAJx8YrVmuVqa1VhU0+QjPsG999Ghm2gWQuGYIdtuIgVM
VvVtiYnhaGVL0qWPb7hnyrQu8IXhX0xY11EeGBBzPEaIPM9J9Pfyt5usmq5uiV3q
PYJBi3eX3KEDCxLpZB8/nEg21vv/8r1fcfXbErUyRcdZuJ9HOAiXM5mrRWo928c0
OfwSElRJt065bp/a2bHoY5OaPt9pRQBm7dSSY7HPKxMNjmgMkHsZx6fls9GyGxvv
8mTDqzPV2hj/4VamcnqBZOVVoRFCnQ6nz8SmRbmNg9x3Uox0Gt9/Ts9KHkAFFiF/
8LMv0H0VPxDgG3dmYqOWCl9VK4bf6CL/5UMEBxz2KDA=
-----END CERTIFICATE-----
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC3ZybUYvGQhnGd
J67drgPLMtqG+mjWM0/mc3cP7RizF5Mj/O4XXCNN25qNpAsFAwgtffGEWrEZMPq0
UPcmcS+AqSMudlp5ZzFez86CHfyf+WGOruFDDrIEqWo9nwMf+/DseUSckBYvJdqd
w89HAQp+JiHcF9MkZAIgo+RP5WF5uYW1aC/OhP4Q5QZt/i25M/fVZ6S0kYdwp7W7
7m9xsu5BaTP6VgI6oz6Pc2vMjoOX3UYRVBtJNnF9j03zd+FSWMBikt2NPj+WO52J
+w6VwaPLQXTXbPwh6BHlg1Qi14MpVKUFKVqPS+E91olnlp7M8Y5PTtblXSNuuAdZ
ixDnP49tAgMBAAECggEABr0biCI6jfzin8udeTezm/u6W8tHntcz0FvdvBASIEJ1
fZUFioYwJeQzwZCNdxmtaz59aUeLykkqbQWsjxUJkcilKkfe+yb3gWxRQian6ZjY
JM34KOaZU+KFrM3y53HyYD30b2w75G+XoMRZEVrQb+ImzFdzwpqKGXjsIqNi+X3v
eJS/IFIHL3KU0W2Eo+NtG5wAb0ymdkcL8ICgWiZVGAdgfPebeIB2hrqgtYdie+f+
CU570F07KkS7cMYzoxEQxopcYbBAOSU91nAvAd/8cYeZcAs3MnMC1IZZGesyX7eJ
AzLQhUUq7LfvPg2gMxR6Y5J1QGIFAlfOoViXFQF7YQKBgQD8Hg/U/B6pUTMkjAt2
yqjEF1sM/3w4uzRfWbmHAYTbsaKaT98zpG11qidRpR1mDsUVISmXf/Teq+PjpnGa
IEDOoCUOxS0gGKTCSxX2tQbGoltvk5AIZ/SS5UFwr5/oA7v5DEk6uLbfkjjnLi7x
KEFXbEenMtAgTEyhzr+KFI2OQwKBgQC6OjFDUdoNJmrWZmCiXs1vYToW7mBjqPU6
XXgBqHPkzxZ9/PPInyW6hes0gLv1NlU4dF0AFNbi0a411ce5BxGVGNio7djJcRnw
96nUeDnEVYuNYfyATo25vBedrkuPx9auO6hyU9ngTOgOc5Jjky5bc/Kv0hjFb02G
lsjt/SkIjwKBgQDE/KAWI9+5H668EYgrivEONcl4gG6IzQyAq9Rf/fnWxhZsR5f3
+7Niyk3qZv5vbX7joYOj0eB70wY+KyB78lNwnoQV5E371AV3ob9JgewHa3fR2BQj
3UWlOOdGqpJgb/qA/u6AqS6JxPAdAWLAHlnfesUJiJRBiBwgGTBjLOfljQKBgEcs
LF21L6fs8dIFCJOltdAGkaPn8NDF5wsqY84GalydRNRb03PuVwYFXpIPTUZ3QHS2
DEEWtdW0G2eZz54IdJDOESfm1v6OCkMM9Ewusq01oIMlWtJSs1mz6DasQVavIn4u
cL9ZCqDt45Z6Vw1VV9c95heKLUtvsWppwFsscP1DAoGAeyLpfrgnkUt1qpDzuABk
MpPH8ciPnTG0o6FRTmI5jsiWZYsPdU2Rb/GBWKJzImHnc1yGvZlCr6qALQFyN2hq
tCqXXHuD3zNLJOpqz7FmAMaJpKov4VI4ADCQiHD/N0fZ4KoOXQNKkA/2l3vCWlgc
4HE3GsMQbCgkyDE5pYgwqdk=
-----END PRIVATE KEY-----
"""


def make_cert(directory: Any) -> str:
    """Write :data:`TEST_PEM` to ``directory``; return the file's path."""
    path = os.path.join(directory, "localhost.pem")
    with open(path, "w") as f:
        f.write(TEST_PEM)
    return path


# -- K1: state before and after open ---------------------------------------------------------


def test_K1_state_before_and_after_open(backend):
    ws, rec = watched(backend.url())
    assert (ws.ready_state, ws.url, ws.protocol, ws.extensions) == (0, backend.url(), "", "")
    assert ws.binary_type == "blob"
    conn = backend.upgrade()
    assert rec.wait_type("open").rs == 1
    assert (ws.protocol, ws.extensions) == (None, None)  # K1: null when none chosen
    ws.close()
    assert conn.recv().opcode == CLOSE


def test_K1_url_without_path_gets_a_slash(backend):
    ws, rec = watched("ws://127.0.0.1:%d" % backend.port)
    assert ws.url == "ws://127.0.0.1:%d/" % backend.port
    conn = backend.upgrade()
    assert conn.path == "/"
    rec.wait_type("open")
    ws.close()


def test_K1_extensions_and_protocol_chosen_by_server():
    with ws_server(ECHO, subprotocols=["v2"]) as url:
        ws, rec = watched(url, ["chat", "v2"])
        rec.wait_type("open")
        assert ws.protocol == "v2"
        assert ws.extensions.startswith("permessage-deflate")
        ws.send("x" * 1000)  # compressed both ways
        assert rec.wait_type("message").detail == "x" * 1000
        ws.close(1000)
        assert rec.wait_type("close").detail == (1000, "", True)


# -- K2: URL and protocol validation ---------------------------------------------------------

K2_CASES = [
    ("http://127.0.0.1:1/", None, "The url scheme must be ws or wss."),
    ("ws://127.0.0.1:1/#frag", None, "The url fragment must be empty."),
    ("not a url", None, "The url is invalid."),
    ("/relative", None, "The url is invalid."),
    ("ws://127.0.0.1:99999/", None, "The url is invalid."),
    ("ws:///nohost", None, "The url is invalid."),
    ("ws://127.0.0.1:1/", "bad proto", "The protocol header token is invalid."),
    ("ws://127.0.0.1:1/", "", "The protocol header token is invalid."),
    ("ws://127.0.0.1:1/", ["a", "a"], "The protocols header cannot have repeating values."),
    ("ws://127.0.0.1:1/", ["a", ""], "One of the protocol header tokens is invalid."),
    ("ws://127.0.0.1:1/", ["a", "b c"], "One of the protocol header tokens is invalid."),
]


@pytest.mark.parametrize("url, protocols, text", K2_CASES)
def test_K2_constructor_validation(url, protocols, text):
    with pytest.raises(DOMException) as info:
        WebSocket(url, protocols)
    assert info.value.name == "SyntaxError"
    assert str(info.value) == "WebSocket Constructor: " + text


def test_K2_empty_protocol_list_is_allowed(backend):
    ws, rec = watched(backend.url(), [])
    assert ws.ready_state == 0
    conn = backend.upgrade()
    assert "sec-websocket-protocol" not in conn.headers
    rec.wait_type("open")
    ws.close()


def test_unknown_option_and_reserved_header_are_refused():
    with pytest.raises(TypeError):
        WebSocket("ws://127.0.0.1:1/", bogus=1)
    with pytest.raises(ValueError):
        WebSocket("ws://127.0.0.1:1/", headers={"Sec-WebSocket-Key": "x"})


# -- K3: before open ---------------------------------------------------------------------------


def test_K3_send_and_accept_before_open(backend):
    ws, rec = watched(backend.url())
    conn = backend.next()
    conn.read_request()  # the 101 is not sent yet: the socket stays CONNECTING
    with pytest.raises(TypeError) as info:
        ws.send("early")
    assert str(info.value) == SEND_BEFORE_ACCEPT
    with pytest.raises(TypeError) as info:
        ws.accept()
    assert str(info.value) == (
        "Websockets obtained from the 'new WebSocket()' constructor cannot call accept")
    conn.accept()
    rec.wait_type("open")
    ws.accept()  # a no-op after open
    ws.send("hello from worker")
    frame = conn.recv()
    assert (frame.opcode, frame.text, frame.masked) == (TEXT, "hello from worker", True)
    ws.close()


# -- K4: close() before open -------------------------------------------------------------------


def test_K4_close_before_open_in_the_same_turn(backend):
    with _runtime.in_turn():
        ws = WebSocket(backend.url())
        rec = Recorder(ws)
        ws.close(1000, "never mind")
        assert ws.ready_state == 1  # K4: workerd's quirk, kept
        with pytest.raises(TypeError, match="You must call one of accept"):
            ws.send("too late")
    seen = rec.wait(lambda s: len(s) >= 2)
    assert seen[0] == Seen("error", 3, NETWORK_LOST)
    assert seen[1] == Seen("close", 3, (1006, CONNECT_FAILED, False))
    assert isinstance(rec.errors[0], NetworkError)
    assert backend.no_connection(0.3)  # K4: the backend sees no connection


def test_K4_close_while_the_handshake_is_in_flight(backend):
    ws, rec = watched(backend.url())
    conn = backend.next()
    conn.read_request()
    ws.close(1000, "never mind")
    seen = rec.wait(lambda s: len(s) >= 2)
    assert [s.type for s in seen] == ["error", "close"]
    assert seen[1].detail == (1006, CONNECT_FAILED, False)
    conn.expect_eof()  # the connection attempt was abandoned


def test_K4_close_after_the_101_arrived_but_before_open_is_dispatched(backend):
    ws = WebSocket(backend.url())  # a script: events are held until something watches
    conn = backend.upgrade()
    conn.text("early")
    time.sleep(0.2)  # the 101 and a message are in; nothing is dispatched yet
    assert ws.ready_state == 0
    ws.close()
    rec = Recorder(ws)
    seen = rec.wait(lambda s: len(s) >= 2)
    assert [s.type for s in seen] == ["error", "close"]
    assert seen[1].detail == (1006, CONNECT_FAILED, False)


# -- K5: connection failures ------------------------------------------------------------------


def test_K5_refused():
    ws, rec = watched("ws://127.0.0.1:%d/backend" % closed_port())
    seen = rec.wait(lambda s: len(s) >= 2)
    assert seen == [Seen("error", 3, NETWORK_LOST), Seen("close", 3, (1006, CONNECT_FAILED, False))]
    assert isinstance(rec.errors[0], NetworkError)
    assert isinstance(rec.errors[0].__cause__, ConnectError)  # what really happened
    assert ws.ready_state == 3


def test_K5_non_101(backend):
    ws, rec = watched(backend.url())
    conn = backend.next()
    conn.read_request()
    conn.respond(200, b"not a websocket")
    seen = rec.wait(lambda s: len(s) >= 2)
    assert seen[0] == Seen("error", 3, "Uncaught TypeError: " + NOT_101 % 200)
    assert type(rec.errors[0]) is TypeError
    assert seen[1] == Seen("close", 3, (1006, CONNECT_FAILED, False))


@pytest.mark.parametrize("answer, why", [
    ({"accept": "d3Jvbmc="}, "Sec-WebSocket-Accept"),
    ({"extensions": "x-unknown"}, "not offered"),
    ({"protocol": "other"}, "not offered"),
    ({"upgrade": "h2c"}, "Upgrade"),
])
def test_bad_server_handshake_is_a_connect_failure(backend, answer, why):
    ws, rec = watched(backend.url(), ["chat"])
    conn = backend.upgrade(**answer)
    seen = rec.wait(lambda s: len(s) >= 2)
    assert seen == [Seen("error", 3, NETWORK_LOST), Seen("close", 3, (1006, CONNECT_FAILED, False))]
    cause = rec.errors[0].__cause__
    assert isinstance(cause, HandshakeError) and why in str(cause)
    conn.expect_eof()


# -- K6: the handshake request -----------------------------------------------------------------


@pytest.mark.parametrize("options, offered", [
    ({}, True),
    ({"compatibility_flags": ["no_web_socket_compression"]}, False),
    ({"compression": False}, False),
    ({"compatibility_date": "2023-08-14"}, False),
    ({"compatibility_date": "2023-08-15"}, True),
])
def test_K6_compression_offer(backend, options, offered):
    ws, rec = watched(backend.url(), **options)
    conn = backend.upgrade()
    headers = conn.headers
    assert headers["upgrade"] == "websocket" and headers["connection"] == "Upgrade"
    assert headers["sec-websocket-version"] == "13"
    assert len(base64.b64decode(headers["sec-websocket-key"])) == 16
    assert headers.get("sec-websocket-extensions") == ("permessage-deflate" if offered else None)
    rec.wait_type("open")
    ws.close()


def test_K6_protocols_sent_and_ignored_by_the_server(backend):
    ws, rec = watched(backend.url(), ["chat", "v2"])
    conn = backend.upgrade()
    assert conn.headers["sec-websocket-protocol"] == "chat, v2"
    rec.wait_type("open")
    assert ws.protocol is None
    ws.close()


def test_extra_headers_are_sent(backend):
    ws, rec = watched(backend.url(), headers={"Origin": "https://a.example", "X-Token": "t"})
    conn = backend.upgrade()
    assert conn.headers["origin"] == "https://a.example" and conn.headers["x-token"] == "t"
    assert conn.headers["host"] == "127.0.0.1:%d" % backend.port
    rec.wait_type("open")
    ws.close()


# -- K7: masking and pings -------------------------------------------------------------------


def test_K7_masked_frames_and_automatic_pong(backend):
    ws, rec = watched(backend.url())
    conn = backend.upgrade()
    conn.send(PING, b"are you there")
    rec.wait_type("open")
    pong = conn.recv()
    assert (pong.opcode, pong.payload, pong.masked) == (PONG, b"are you there", True)
    ws.send(b"\x09\x08\x07")
    frame = conn.recv()
    assert (frame.opcode, frame.payload, frame.masked) == (BINARY, b"\x09\x08\x07", True)
    conn.text("hello from backend")
    assert rec.wait_type("message").detail == "hello from backend"
    ws.close(1000, "bye")
    frame = conn.recv()
    assert frame.masked and frame.close == (1000, "bye")
    assert "ping" not in rec.types() and "pong" not in rec.types()


# -- K8: the Close rule by compatibility date -------------------------------------------------


def test_K8_current_date_replies_to_the_backend_close(backend):
    ws, rec = watched(backend.url())
    conn = backend.upgrade()
    rec.wait_type("open")
    ws.send("hello from worker")
    assert conn.recv().text == "hello from worker"
    conn.text("hello from backend")
    conn.close(1000, "backend bye")
    reply = conn.recv()
    assert (reply.opcode, reply.close, reply.masked) == (CLOSE, (1000, "backend bye"), True)
    conn.expect_eof()
    seen = rec.wait(lambda s: any(e.type == "close" for e in s))
    assert seen[1] == Seen("message", 1, "hello from backend")
    assert seen[2] == Seen("close", 3, (1000, "backend bye", True))
    time.sleep(0.1)
    assert "error" not in rec.types()  # SPEC §8.2: no spurious error (B12)


@pytest.mark.parametrize("options", [{"compatibility_date": "2025-06-01"},
                                     {"compatibility_flags": ["web_socket_manual_reply_to_close"]}])
def test_K8_legacy_does_not_reply(backend, options):
    ws, rec = watched(backend.url(), **options)
    conn = backend.upgrade()
    conn.close(1000, "backend bye")
    assert rec.wait_type("close") == Seen("close", 2, (1000, "backend bye", True))
    conn.expect_silence(0.3)  # no automatic reply
    ws.send("last")  # B13: still possible
    assert conn.recv().text == "last"
    ws.close(1000, "done")
    assert conn.recv().close == (1000, "done")
    conn.expect_eof()
    assert ws.ready_state == 3
    assert rec.types().count("close") == 1


# -- E6, H1: failures after open --------------------------------------------------------------


def test_E6_oversized_message_from_backend(backend):
    ws, rec = watched(backend.url())
    conn = backend.upgrade()
    conn.sock.sendall(build_frame(BINARY, b"\x00" * 16, mask=False, length=33554433))
    reply = conn.recv()
    assert reply.masked and reply.close == (1009, "Message is too large: 33554433 > 33554432")
    seen = rec.wait(lambda s: any(e.type == "error" for e in s))
    assert seen[-1] == Seen("error", 3, "Uncaught Error: WebSocket protocol error; "
                            "protocolError.statusCode = 1009; protocolError.description = "
                            "Message is too large: 33554433 > 33554432")
    time.sleep(0.2)
    assert "close" not in rec.types()


def test_max_message_size_option(backend):
    ws, rec = watched(backend.url(), max_message_size=10)
    conn = backend.upgrade()
    conn.text("0123456789x")
    assert conn.recv().close == (1009, "Message is too large: 11 > 10")
    rec.wait_type("error")


def test_H1_backend_drops(backend):
    ws, rec = watched(backend.url())
    conn = backend.upgrade()
    rec.wait_type("open")
    conn.drop()
    close = rec.wait_type("close")
    assert close.detail == (1006, "WebSocket disconnected without sending Close frame.", False)
    time.sleep(0.1)
    assert "error" not in rec.types()


# -- the delivery rule: listeners added right after creation see everything -------------------


def test_listener_added_after_connect_sees_the_greeting(backend):
    ready = threading.Event()

    def serve():
        conn = backend.upgrade()
        for n in range(3):
            conn.text("greeting %d" % n)
        ready.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ws = connect(backend.url(), timeout=TIMEOUT)
    assert ready.wait(TIMEOUT)
    time.sleep(0.2)  # the greetings have arrived before any listener exists
    got = []
    done = threading.Event()

    def on_message(event):
        got.append(event.data)
        if len(got) == 3:
            done.set()

    ws.on_message = on_message
    assert done.wait(TIMEOUT), got
    assert got == ["greeting 0", "greeting 1", "greeting 2"]
    ws.close()
    thread.join(TIMEOUT)


def test_listeners_added_after_WebSocket_see_open_and_messages(backend):
    ws = WebSocket(backend.url())  # in a script: nothing is delivered to nobody
    conn = backend.upgrade()
    conn.text("first")
    conn.text("second")
    time.sleep(0.2)  # everything has arrived before any listener exists
    assert ws.ready_state == 0
    rec = Recorder(ws)  # four listeners, one after the other
    seen = rec.wait(lambda s: len(s) >= 3)
    assert seen == [Seen("open", 1, None), Seen("message", 1, "first"),
                    Seen("message", 1, "second")]
    ws.close()


def test_a_socket_made_in_a_turn_connects_when_the_turn_ends(backend):
    with _runtime.in_turn():  # as in a handler or a listener
        ws = WebSocket(backend.url())
        assert backend.no_connection(0.2)
        rec = Recorder(ws)
    backend.upgrade().text("hi")
    assert rec.wait(lambda s: len(s) >= 2) == [Seen("open", 1, None), Seen("message", 1, "hi")]
    ws.close()


# -- connect() ------------------------------------------------------------------------------


def test_connect_returns_an_open_socket():
    with ws_server(ECHO) as url:
        ws = connect(url, timeout=TIMEOUT)
        assert ws.ready_state == 1 and ws.url == url
        ws.send("hi")
        assert ws.receive(timeout=TIMEOUT) == "hi"
        ws.close(1000, "bye")
        assert ws.wait_closed(timeout=TIMEOUT).code == 1000


def test_connect_refused_raises_ConnectError():
    with pytest.raises(ConnectError) as info:
        connect("ws://127.0.0.1:%d/" % closed_port(), timeout=TIMEOUT)
    assert "refused" in str(info.value).lower()
    assert not isinstance(info.value, HandshakeError)


def test_connect_non_101_raises_HandshakeError_naming_the_status(backend):
    def serve():
        conn = backend.next()
        conn.read_request()
        conn.respond(404, b"nope")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises(HandshakeError) as info:
        connect(backend.url(), timeout=TIMEOUT)
    assert info.value.status == 404 and "404" in str(info.value)
    thread.join(TIMEOUT)


def test_connect_times_out(backend):
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as info:
        connect(backend.url(), timeout=0.5)  # the backend never answers
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < TIMEOUT
    backend.next(TIMEOUT).expect_eof()  # the connection was made, then given up


def test_connect_validates_the_url():
    with pytest.raises(DOMException):
        connect("http://127.0.0.1:1/")


# -- other servers --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_against_websocket_app_on_every_server(kind):
    with server_process(kind, "tests.apps:echo") as server:
        ws, rec = watched(server.ws_url("/"))
        rec.wait_type("open")
        assert ws.extensions == "permessage-deflate"  # our server accepts the offer
        ws.send("hello")
        ws.send(b"\x00\x01")
        seen = rec.wait(lambda s: len(s) >= 3)
        assert seen[1].detail == "hello" and seen[2].detail.bytes() == b"\x00\x01"
        ws.close(4000, "done")
        assert rec.wait_type("close").detail == (4000, "done", True)


def test_against_simple_websocket_in_werkzeug():
    from simple_websocket import Server
    from werkzeug.serving import make_server

    def app(environ, start_response):
        ws = Server(environ)
        message = ws.receive(timeout=TIMEOUT)
        ws.send("simple: %s" % message)
        ws.close(4001, "simple bye")
        return []

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ws = connect("ws://127.0.0.1:%d/" % server.server_port, timeout=TIMEOUT)
        ws.send("hi")
        assert ws.receive(timeout=TIMEOUT) == "simple: hi"
        event = ws.wait_closed(timeout=TIMEOUT)
        assert (event.code, event.reason, event.was_clean) == (4001, "simple bye", True)
    finally:
        server.shutdown()
        thread.join(TIMEOUT)


def test_wss_with_a_trusted_context(tmp_path):
    pem = make_cert(str(tmp_path))
    with ws_server(ECHO, pem=pem) as url:
        assert url.startswith("wss://")
        with pytest.raises(ConnectError) as info:  # the system trust store refuses it
            connect(url, timeout=TIMEOUT)
        assert "certificate" in str(info.value).lower() or "TLS" in str(info.value)
        trusting = ssl.create_default_context(cafile=pem)
        ws = connect(url, timeout=TIMEOUT, ssl_context=trusting)
        ws.send("secure")
        assert ws.receive(timeout=TIMEOUT) == "secure"
        ws.close()
        assert ws.wait_closed(timeout=TIMEOUT).was_clean
