"""The client side of HTTP/1.1 and of the WebSocket opening handshake (RFC 6455 §4.1).

The checks are plain functions with no I/O: URLs and subprotocols as ``new WebSocket()``
checks them (RULES K2), the request head, and the server's answer to an upgrade (RFC 6455
§4.1, "the client MUST validate the server's response").  :func:`open_socket`,
:func:`exchange`, :func:`read_head` and :func:`read_body` do the I/O; they hand back
whatever they read past the response head, so the frames that follow a ``101`` reach
the WebSocket connection intact.  They raise the socket's own errors (``OSError``,
``socket.timeout``) or ``ValueError`` for a malformed answer; :func:`failures` words
those as the public :class:`ConnectError` family, which :mod:`cfws_sync.client`
re-exports, and :func:`upgrade` runs the whole opening handshake of ``WebSocket(url)``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import ssl
import time
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Union
from urllib.parse import SplitResult, urlsplit

from wsproto.extensions import PerMessageDeflate

from ._connection import ConnectionOptions
from ._frames import DEFAULT_MAX_MESSAGE_SIZE
from ._inbox import RECEIVE_BUFFER
from .compat import Compatibility
from .errors import DOMException, NetworkError
from .http import Headers

__all__ = ["Target", "ws_target", "http_target", "check_protocols", "request_head",
           "Head", "open_socket", "exchange", "read_head", "read_body", "check_upgrade",
           "new_key", "deadline_left", "ConnectError", "ConnectTimeout", "HandshakeError",
           "failures", "ClientOptions", "upgrade", "Upgraded"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_HEAD = 64 * 1024  # bytes of response head we read before giving up

# RULES K2: workerd's texts, each prefixed with "WebSocket Constructor: ".
_CTOR = "WebSocket Constructor: "
URL_INVALID = _CTOR + "The url is invalid."
URL_SCHEME = _CTOR + "The url scheme must be ws or wss."
URL_FRAGMENT = _CTOR + "The url fragment must be empty."
PROTOCOL_INVALID = _CTOR + "The protocol header token is invalid."
PROTOCOLS_INVALID = _CTOR + "One of the protocol header tokens is invalid."
PROTOCOLS_REPEATED = _CTOR + "The protocols header cannot have repeating values."
#: RULES K5: the error of a ``new WebSocket()`` whose server did not answer 101.
NOT_101 = ("Failed to establish the WebSocket connection: expected server to reply with "
           "HTTP status code 101 (switching protocols), but received %d instead.")
#: RULES K11: ``fetch()`` of a URL that is not http or https.
FETCH_SCHEME = "Fetch API cannot load: %s"

_RESERVED = ("upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
             "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 7230 §3.2.6 token
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*\Z")
_DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}


class Target(NamedTuple):
    """Where a request goes."""

    #: The URL as the socket's ``url`` shows it.
    url: str
    #: ``True`` for wss and https.
    secure: bool
    #: The host to connect to (brackets removed from an IPv6 literal).
    host: str
    port: int
    #: The request target: path and query.
    resource: str
    #: The ``Host`` header value.
    host_header: str


def _split(url: object) -> Optional[SplitResult]:
    """``urlsplit`` for an absolute URL with a host, or ``None``."""
    if not isinstance(url, str) or not url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    if not _SCHEME.match(parts.scheme or ""):
        return None
    return parts


def _target(parts: SplitResult) -> Target:
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[scheme]
    path = parts.path or "/"
    resource = path + ("?" + parts.query if parts.query else "")
    shown = host if ":" not in host else "[%s]" % host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else "%s:%d" % (shown, port)
    url = "%s://%s%s" % (scheme, parts.netloc, resource)
    return Target(url, scheme in ("wss", "https"), host, port, resource, host_header)


def ws_target(url: object) -> Target:
    """Check a ``WebSocket(url)`` URL as workerd does (RULES K2).

    :raises DOMException: ``SyntaxError`` with workerd's text.
    """
    parts = _split(url)
    if parts is None or (parts.scheme.lower() in _DEFAULT_PORTS and not parts.hostname):
        raise DOMException(URL_INVALID, "SyntaxError")
    if parts.scheme.lower() not in ("ws", "wss"):
        raise DOMException(URL_SCHEME, "SyntaxError")
    if parts.fragment:
        raise DOMException(URL_FRAGMENT, "SyntaxError")
    return _target(parts)


def http_target(url: object) -> Target:
    """Check a ``fetch()`` URL: http and https only (RULES K11).

    :raises TypeError: ``Fetch API cannot load: <url>``.
    """
    parts = _split(url)
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise TypeError(FETCH_SCHEME % (url,))
    return _target(parts._replace(fragment=""))


def check_protocols(protocols: Union[str, Iterable[str], None]) -> list[str]:
    """Check the subprotocols of ``WebSocket(url, protocols)`` (RULES K2).

    :returns: the protocols, in order (empty for none).
    :raises DOMException: ``SyntaxError`` with workerd's text.
    :raises TypeError: for a value that is not a ``str`` or a list of them.
    """
    if protocols is None:
        return []
    if isinstance(protocols, str):
        if not _TOKEN.match(protocols):
            raise DOMException(PROTOCOL_INVALID, "SyntaxError")
        return [protocols]
    if isinstance(protocols, (bytes, bytearray)):
        raise TypeError("protocols must be a str or a list of str, not bytes")
    listed = list(protocols)
    for protocol in listed:
        if not isinstance(protocol, str):
            raise TypeError("protocols must be str, not %s" % type(protocol).__name__)
        if not _TOKEN.match(protocol):
            raise DOMException(PROTOCOLS_INVALID, "SyntaxError")
    if len(set(listed)) != len(listed):
        raise DOMException(PROTOCOLS_REPEATED, "SyntaxError")
    return listed


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64 (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _accept_for(key: str) -> str:
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def request_head(method: str, target: Target, headers: Headers) -> bytes:
    """The head of a request; ``Host`` is added unless ``headers`` has one."""
    lines = ["%s %s HTTP/1.1" % (method, target.resource)]
    if "host" not in headers:
        lines.append("Host: " + target.host_header)
    lines.extend("%s: %s" % pair for pair in headers.raw_items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Head(NamedTuple):
    """A response's status line and headers."""

    status: int
    reason: str
    headers: Headers


def deadline_left(deadline: Optional[float]) -> Optional[float]:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value), or ``None``.

    :raises socket.timeout: when it has passed.
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("timed out")
    return left


def open_socket(target: Target, context: Optional[ssl.SSLContext], deadline: Optional[float],
                adopt: Optional[Callable[[socket.socket], None]] = None) -> socket.socket:
    """Open a TCP connection to ``target``, with TLS for wss and https.

    :param context: the TLS settings; by default the system's trust store.
    :param adopt: called with each socket as soon as it exists, so that another thread
        can shut it down; it may raise to abandon the connection.
    """
    sock = socket.create_connection((target.host, target.port), timeout=deadline_left(deadline))
    try:
        if adopt is not None:
            adopt(sock)
        if target.secure:
            context = context or ssl.create_default_context()
            sock.settimeout(deadline_left(deadline))
            sock = context.wrap_socket(sock, server_hostname=target.host)
            if adopt is not None:
                adopt(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def exchange(sock: socket.socket, head: bytes, deadline: Optional[float]) -> tuple[Head, bytes]:
    """Send a request (head and body), and read the response head.

    :returns: the head, and the bytes read past it.
    """
    sock.settimeout(deadline_left(deadline))
    sock.sendall(head)
    return read_head(sock, deadline)


def read_head(sock: socket.socket, deadline: Optional[float]) -> tuple[Head, bytes]:
    """Read a response head.

    :returns: the head, and the bytes read past it (the first frames, or body).
    :raises ValueError: for a malformed or oversized head, or EOF before its end.
    :raises OSError: from the socket (``socket.timeout`` past the deadline).
    """
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return _parse_head(data[:end]), data[end + 4:]
        if len(data) > MAX_HEAD:
            raise ValueError("the response head is over %d bytes" % MAX_HEAD)
        sock.settimeout(deadline_left(deadline))
        chunk = sock.recv(16384)
        if not chunk:
            raise ValueError("the server closed the connection before answering"
                             if not data else "the server closed the connection mid-head")
        data += chunk


def _parse_head(data: bytes) -> Head:
    lines = data.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise ValueError("not an HTTP/1.1 response: %r" % lines[0][:80])
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError("malformed header line: %r" % line[:80])
        headers.append(name, value.strip())
    return Head(int(code), reason.strip(), headers)


def read_body(sock: socket.socket, head: Head, early: bytes, method: str,
              deadline: Optional[float]) -> bytes:
    """Read the body that follows ``head``: by ``Content-Length``, chunked, or to EOF.

    :param early: the bytes :func:`read_head` read past the head.
    :raises ValueError: for a malformed body.
    :raises OSError: from the socket.
    """
    if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
        return b""
    reader = _Reader(sock, early, deadline)
    if "chunked" in (head.headers.get("Transfer-Encoding") or "").lower():
        return reader.chunked()
    length = head.headers.get("Content-Length")
    if length is not None:
        if not length.strip().isdigit():
            raise ValueError("bad Content-Length: %r" % length)
        return reader.exactly(int(length))
    return reader.to_eof()


class _Reader:
    """Buffered reads from a socket, with a deadline."""

    def __init__(self, sock: socket.socket, data: bytes, deadline: Optional[float]) -> None:
        self.sock, self.data, self.deadline = sock, data, deadline

    def _more(self) -> bool:
        self.sock.settimeout(deadline_left(self.deadline))
        chunk = self.sock.recv(65536)
        self.data += chunk
        return bool(chunk)

    def exactly(self, n: int) -> bytes:
        while len(self.data) < n:
            if not self._more():
                raise ValueError("the connection closed %d bytes into a %d-byte body"
                                 % (len(self.data), n))
        out, self.data = self.data[:n], self.data[n:]
        return out

    def line(self) -> bytes:
        while b"\r\n" not in self.data:
            if len(self.data) > MAX_HEAD or not self._more():
                raise ValueError("malformed chunked body")
        out, _, self.data = self.data.partition(b"\r\n")
        return out

    def chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self.line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError("bad chunk size: %r" % size_text[:20]) from None
            if size == 0:
                while self.line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self.exactly(size))
            if self.exactly(2) != b"\r\n":
                raise ValueError("malformed chunked body")

    def to_eof(self) -> bytes:
        while self._more():
            pass
        return self.data


def check_upgrade(head: Head, key: str, protocols: Optional[list[str]], deflate_offered: bool,
                  ) -> tuple[Optional[str], Optional[str], Optional[PerMessageDeflate]]:
    """Validate a ``101`` answer to our upgrade (RFC 6455 §4.1, last list).

    :param protocols: the subprotocols we offered; the server may choose one or none.
        ``None``: not checked (a ``fetch()`` passes the caller's headers through).
    :param deflate_offered: whether we offered permessage-deflate.
    :returns: the chosen subprotocol, the ``Sec-WebSocket-Extensions`` value (each
        ``None`` when absent, RULES K1), and the negotiated extension.
    :raises ValueError: saying what is wrong.
    """
    headers = head.headers
    if (headers.get("Upgrade") or "").lower() != "websocket":
        raise ValueError("the 101 response has no 'Upgrade: websocket' header")
    connection = [v.strip().lower() for v in (headers.get("Connection") or "").split(",")]
    if "upgrade" not in connection:
        raise ValueError("the 101 response has no 'Connection: Upgrade' header")
    if headers.get("Sec-WebSocket-Accept") != _accept_for(key):
        raise ValueError("the 101 response has a wrong Sec-WebSocket-Accept")
    protocol = headers.get("Sec-WebSocket-Protocol")
    if protocol is not None and protocols is not None and protocol not in protocols:
        raise ValueError("the server chose subprotocol %r, which was not offered" % protocol)
    extensions = headers.get("Sec-WebSocket-Extensions")
    deflate = None
    if extensions is not None:
        for offer in extensions.split(","):
            name = offer.split(";", 1)[0].strip().lower()
            if name != "permessage-deflate" or not deflate_offered or deflate is not None:
                raise ValueError("the server answered extension %r, which was not offered"
                                 % offer.strip())
            deflate = PerMessageDeflate()
            try:
                deflate.finalize(offer.strip())
            except ValueError:
                raise ValueError("bad permessage-deflate answer: %r" % offer.strip()) from None
    return protocol, extensions, deflate


# -- errors and options ----------------------------------------------------------------------


class ConnectError(NetworkError):
    """A connection could not be established: refused, unreachable, or cut off."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The connection did not open within the timeout."""


class HandshakeError(ConnectError):
    """The server did not accept the WebSocket upgrade.

    :param status: the status of the server's answer (101 when its headers were wrong).
    :param message: what went wrong.
    :param headers: the answer's headers.
    """

    def __init__(self, status: int, message: str, headers: Optional[Headers] = None) -> None:
        super().__init__(message)
        #: The HTTP status the server answered with.
        self.status = status
        #: The headers of that answer.
        self.headers = headers if headers is not None else Headers()


@contextlib.contextmanager
def failures(what: str) -> Iterator[None]:
    """Word socket errors and malformed answers as :class:`ConnectError` (not nested)."""
    try:
        yield
    except socket.timeout:
        raise ConnectTimeout("%s: timed out" % what) from None
    except (OSError, ValueError) as exc:
        raise ConnectError("%s: %s" % (what, getattr(exc, "strerror", None) or exc)) from exc


class ClientOptions:
    """The options of ``WebSocket(url)``, ``connect()`` and ``fetch()``.

    :param options: the keyword arguments; each one used is removed from the dict.
    :param what: the caller's name, for error messages.
    :raises TypeError: for an unknown option.
    :raises ValueError: for a bad value.
    """

    def __init__(self, options: dict[str, Any], what: str, compat: Compatibility) -> None:
        take = options.pop
        self.headers = Headers(take("headers", None))
        for name in self.headers:
            if name in _RESERVED:
                raise ValueError("%s sets the %s header itself (use protocols= or "
                                 "compression=)" % (what, name))
        self.max_message_size = take("max_message_size", DEFAULT_MAX_MESSAGE_SIZE)
        if isinstance(self.max_message_size, bool) or not isinstance(self.max_message_size, int) \
                or self.max_message_size <= 0:
            raise ValueError("max_message_size must be a positive int")
        self.open_timeout: Optional[float] = take("open_timeout", 10.0)
        _positive("open_timeout", self.open_timeout, none_ok=True)
        self.receive_buffer = take("receive_buffer", RECEIVE_BUFFER)
        _positive("receive_buffer", self.receive_buffer)
        self.ssl_context: Optional[ssl.SSLContext] = take("ssl_context", None)
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext")
        compression = take("compression", None)
        #: permessage-deflate is offered (K6, N1).
        self.compression = compat.compression if compression is None else bool(compression)
        self.connection = ConnectionOptions(
            take("close_timeout", 10.0), take("max_queue", 64 << 20),
            take("ping_interval", None), take("ping_timeout", None))
        if options:
            raise TypeError("%s got an unexpected keyword argument %r"
                            % (what, next(iter(options))))


def _positive(name: str, value: object, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("%s must be a positive number, not %r" % (name, value))


# -- the opening handshake ---------------------------------------------------------------------


class Upgraded(NamedTuple):
    """An open WebSocket connection, as the handshake left it."""

    sock: socket.socket
    #: Bytes read past the 101 head: the first frames.
    early: bytes
    #: The chosen subprotocol and the extensions header, ``None`` when absent (K1).
    protocol: Optional[str]
    extensions: Optional[str]
    deflate: Optional[PerMessageDeflate]


def upgrade(target: Target, protocols: list[str], options: ClientOptions,
            adopt: Optional[Callable[[socket.socket], None]] = None) -> Upgraded:
    """Connect to ``target`` and complete the opening handshake as ``new WebSocket()``
    does (K6): subprotocols as ``chat, v2``, permessage-deflate offered unless off.

    :param adopt: as for :func:`open_socket`.
    :raises ConnectError: refused, unreachable, cut off, timed out
        (:class:`ConnectTimeout`), or a bad answer (:class:`HandshakeError`).
    """
    deadline = None if options.open_timeout is None else time.monotonic() + options.open_timeout
    key = new_key()
    headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade"),
                       ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")])
    if protocols:
        headers.append("Sec-WebSocket-Protocol", ", ".join(protocols))
    if options.compression:
        headers.append("Sec-WebSocket-Extensions", "permessage-deflate")
    for name, value in options.headers.raw_items():
        headers.append(name, value)
    with failures("cannot connect to %s" % target.url):
        sock = open_socket(target, options.ssl_context, deadline, adopt)
    try:
        with failures("the handshake with %s failed" % target.url):
            head, early = exchange(sock, request_head("GET", target, headers), deadline)
        if head.status != 101:
            raise HandshakeError(head.status, "handshake answered with status %d %s, not 101"
                                 % (head.status, head.reason), head.headers)
        try:
            protocol, extensions, deflate = check_upgrade(head, key, protocols,
                                                          options.compression)
        except ValueError as exc:
            raise HandshakeError(101, str(exc), head.headers) from None
    except BaseException:
        sock.close()
        raise
    return Upgraded(sock, early, protocol, extensions, deflate)
