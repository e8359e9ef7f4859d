"""Clients: ``WebSocket(url)``, :func:`connect` and :func:`fetch`, and the blocking
helpers for scripts (SPEC §6, RULES K).

Theory of operation
-------------------
``WebSocket(url)`` checks the URL and subprotocols at once (K2), then a reader greenlet or
thread connects, sends the upgrade request (K6), checks the server's answer, and runs a
:class:`~._connection.Connection` whose frames are masked (K7).  The socket starts
``CONNECTING`` and accepted, as workerd accepts it internally (K1); it gets ``open``,
or ``error`` then ``close`` 1006 when the connection cannot be made (K4, K5), and it
follows the compatibility date's Close rule, with no ``accept()`` option (K8).
:func:`fetch` sends a plain request; a ``101`` answer yields an end that works like a
pair end: nothing is delivered before ``accept()`` (K9).

When events are delivered
-------------------------
In a Worker, listeners added right after ``new WebSocket()`` see every event, because
nothing is dispatched before the current turn of JavaScript ends.  Here the rule is:

* A socket made by ``WebSocket()`` or :func:`connect` inside a turn of user code (a
  handler, a listener) delivers nothing until that turn ends.  ``WebSocket()`` also
  starts connecting only then, so a ``close()`` in the same turn means no connection at
  all (K4).
* Made outside any turn (a script), it holds its events, in order, until something
  watches it.  A blocking helper (``receive``, ``messages``, ``wait_closed``) starts
  delivery at once.  Attaching a listener or ``on_<type>`` handler starts it when the
  script has finished attaching: under gevent, when the script next yields (so every
  listener attached before that sees every event); under plain threads, where that
  moment cannot be seen, once no listener has been attached for
  :data:`ATTACH_GRACE` seconds.  Listeners attached one after the other, as a Worker
  attaches them, all see every event.
* :func:`connect` lets the ``open`` event through (it waits for it), then holds the rest
  the same way, so listeners attached right after it returns see every message.

The blocking helpers and their buffering rule are in :mod:`cfws_sync._inbox`.
"""

from __future__ import annotations

import collections
import functools
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Optional, Union

from . import _runtime, errors
from ._connection import Connection
from ._frames import WireCodec
from ._handshake import (NOT_101, ClientOptions, ConnectError, ConnectTimeout,
                         HandshakeError, Head, Target, check_protocols, check_upgrade,
                         exchange, failures, http_target, new_key, open_socket, read_body,
                         request_head, upgrade, ws_target)
from ._inbox import ConnectionClosed, inbox_of
from ._protocol import ConnectFailed, Inbound, Opened, Phase
from .compat import Compatibility
from .errors import NetworkError
from .http import Headers, HeadersInit, Response

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["connect", "fetch", "open_client", "ConnectError", "ConnectTimeout",
           "HandshakeError", "ConnectionClosed"]

log = logging.getLogger("cfws_sync")

#: Under plain threads, a script's client starts delivering events once no listener
#: has been attached to it for this many seconds ("When events are delivered" above).
ATTACH_GRACE = 0.1


# -- WebSocket(url) --------------------------------------------------------------------------


def open_client(ws: "WebSocket", url: str, protocols: Any, options: dict[str, Any],
                wait_open: bool = False) -> None:
    """Start ``ws`` (set up as a connecting client end) connecting to ``url``.

    Called by ``WebSocket.__init__`` and :func:`connect`.

    :raises DOMException: ``SyntaxError`` for a bad URL or subprotocol (K2).
    :raises TypeError: for an unknown option.
    :raises ValueError: for a bad option value.
    """
    target = ws_target(url)  # K2
    offered = check_protocols(protocols)
    opts = ClientOptions(options, "WebSocket()", ws._machine.compat)
    ws.url = target.url  # K1: set at once
    client = _Client(ws, target, offered, opts, wait_open)
    inbox_of(ws).keep(opts.receive_buffer)
    ws._machine.accepted = True  # K1: workerd accepts it internally
    ws._machine.link = client
    in_turn = _turn_running()
    if in_turn:
        _runtime.after_turn(client.release)  # JS: nothing before the turn ends
    else:
        ws._hold = client.watched  # released when something watches the socket
        ws._release_held = client.release
    if in_turn and not wait_open:
        _runtime.after_turn(functools.partial(_runtime.spawn, client.run))  # K4
    else:
        _runtime.spawn(client.run)


def _turn_running() -> bool:
    return getattr(_runtime._turn, "pending", None) is not None


class _Cancelled(Exception):
    """``close()`` was called while connecting."""


def _closed_before_open() -> NetworkError:
    error = NetworkError(errors.NETWORK_LOST)  # K4
    error.__cause__ = ConnectError("close() was called before the connection opened")
    return error


def _js_error(exc: ConnectError) -> BaseException:
    """The error workerd reports for a failed connect (K5); ``__cause__`` says why."""
    error: BaseException
    if isinstance(exc, HandshakeError) and exc.status != 101:
        error = TypeError(NOT_101 % exc.status)
    else:
        error = NetworkError(errors.NETWORK_LOST)
    error.__cause__ = exc
    return error


class _Client:
    """The peer of a ``WebSocket(url)`` end: it connects, then relays to the connection.

    It is the end's link (what the end sends goes through it, under the end's lock) and
    the connection's end (what arrives is posted to it).  So it can hold events until
    the creator is ready (module doc), and turn a ``close()`` before open into K4's
    failure: a held or queued ``Opened`` becomes ``ConnectFailed``.
    """

    def __init__(self, ws: "WebSocket", target: Target, protocols: list[str],
                 options: ClientOptions, wait_open: bool) -> None:
        self.ws, self.target, self.protocols, self.options = ws, target, protocols, options
        self._lock = _runtime.leaf_lock()  # below the end's locks; guards what follows
        self._held: Optional[collections.deque[Inbound]] = collections.deque()
        self._wait_open = wait_open  # connect(): let Opened / ConnectFailed through
        self._cancelled = False
        self._sock: Optional[socket.socket] = None
        self._connection: Optional[Connection] = None
        self._timer: Optional[_runtime.Timer] = None

    # -- the end's link: called with the end's lock held; never blocks -----------------------

    def message(self, data: Union[str, bytes]) -> None:
        assert self._connection is not None  # the end is open
        self._connection.message(data)

    def close(self, code: Optional[int], reason: str) -> None:
        assert self._connection is not None
        self._connection.close(code, reason)

    def finish(self) -> None:
        if self._connection is not None:
            self._connection.finish()

    def cancel(self) -> None:
        """K4: ``close()`` before open.  The connect stops, and the end gets ``error``
        and ``close`` 1006 instead of ``open``."""
        failed = ConnectFailed(_closed_before_open())
        with self._lock:
            self._cancelled = True
            sock = self._sock
            _replace_opened(self._held, failed)
        ws = self.ws
        with ws._mailbox_lock:
            _replace_opened(ws._mailbox, failed)
        if sock is not None:
            _shutdown(sock)

    # -- the connection's end ------------------------------------------------------------

    def _post(self, item: Inbound, inline: bool = False) -> None:
        kind = type(item)
        if self._held is None and kind is not Opened:
            self.ws._post(item, inline)
            return
        with self._lock:
            if kind is Opened and self._cancelled:
                item, kind = ConnectFailed(_closed_before_open()), ConnectFailed
            held = self._held
            if held is None or (self._wait_open and not held and kind in (Opened, ConnectFailed)):
                # Posted under the lock, so that cancel() finds it (and never inline: the
                # end's lock would be taken under this one).
                self.ws._post(item)
            else:
                held.append(item)

    def watched(self) -> None:
        """A listener or handler was attached outside the creating turn."""
        if self._held is None:
            return
        if _turn_running():
            _runtime.after_turn(self.release)
        elif _runtime.using_gevent():
            self.release()  # the pump it starts runs when this greenlet yields
        else:  # threads: wait until the script has attached its listeners
            with self._lock:
                timer, self._timer = self._timer, _runtime.spawn_later(
                    ATTACH_GRACE, self.release)
            if timer is not None:
                timer.cancel()

    def release(self) -> None:
        """Deliver what was held, and from now on everything at once."""
        with self._lock:
            held = self._held
            if held is None:
                return
            for item in held:  # the pump starts when the current turn ends
                self.ws._post(item)
            self._held = None  # only now: the reader's unlocked path must not pass these
            timer, self._timer = self._timer, None
        self.ws._hold = self.ws._release_held = None
        if timer is not None:
            timer.cancel()

    # -- connecting (in the reader greenlet or thread) ------------------------------------

    def run(self) -> None:
        """Connect, then read until the connection ends."""
        try:
            if self._cancelled:
                raise _Cancelled
            up = upgrade(self.target, self.protocols, self.options, self._adopt)
        except (_Cancelled, ConnectError) as exc:
            if self._cancelled:  # K4, or the socket that cancel() shut down failed
                self._post(ConnectFailed(_closed_before_open()))
                return
            assert isinstance(exc, ConnectError)
            log.info("WebSocket connection to %s failed: %s", self.target.url, exc)
            self._post(ConnectFailed(_js_error(exc)))  # K5
            return
        codec = WireCodec(True, up.deflate, self.options.max_message_size)  # K7: masked
        connection = Connection(up.sock, self, codec, self.options.connection)
        with self._lock:
            self._connection = connection
        self._post(Opened(up.protocol, up.extensions))  # K1
        try:
            connection.run(up.early)
        finally:
            up.sock.close()

    def _adopt(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self._cancelled:
                raise _Cancelled


def _replace_opened(queue: Optional[collections.deque[Inbound]], failed: ConnectFailed) -> None:
    if queue:
        for index, item in enumerate(queue):
            if type(item) is Opened:
                queue[index] = failed
                return


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- connect() -------------------------------------------------------------------------------


def connect(url: str, protocols: Union[str, list[str], tuple[str, ...], None] = None,
            headers: HeadersInit = None, timeout: Optional[float] = 10.0,
            **options: Any) -> "WebSocket":
    """Open a WebSocket and wait until it is open: the Pythonic form for scripts.

    Listeners attached right after it returns see every message (see the module doc).
    The other options are those of ``WebSocket(url)``: ``compatibility_date``,
    ``compatibility_flags``, ``max_message_size``, ``close_timeout``, ``max_queue``,
    ``ping_interval``, ``ping_timeout``, ``ssl_context``, ``compression`` and
    ``receive_buffer``.

    :param url: a ws:// or wss:// URL.
    :param protocols: subprotocols to offer.
    :param headers: extra request headers (``Origin``, ``Authorization``…).
    :param timeout: seconds the connection may take to open; ``None`` waits forever.
    :returns: the open :class:`~cfws_sync.WebSocket`.
    :raises ConnectError: refused or unreachable; :class:`HandshakeError` when the
        server answered with another status than 101 (the message names it) or a bad
        handshake; :class:`ConnectTimeout` after ``timeout``.
    :raises DOMException: ``SyntaxError`` for a bad URL or subprotocol (K2).
    """
    from .websocket import WebSocket, current_compatibility_for

    if headers is not None:
        options["headers"] = headers
    options["open_timeout"] = timeout
    ws = WebSocket.__new__(WebSocket)
    ws._setup(current_compatibility_for(options), Phase.CONNECTING, "client")
    open_client(ws, url, protocols, options, wait_open=True)
    inbox = inbox_of(ws)
    # The reader reports success or failure by the deadline; the margin covers dispatch.
    limit = None if timeout is None else timeout + 5.0
    with inbox.cond:
        if not inbox.cond.wait_for(lambda: inbox.opened or inbox.ended, limit):
            ws.close()
            raise ConnectTimeout("%s did not open within %ss" % (url, timeout))
        if inbox.opened:
            return ws
        error = inbox.error
    cause = error.__cause__ if error is not None else None
    if isinstance(cause, ConnectError):
        raise cause.with_traceback(None)
    raise ConnectError(str(error))


# -- fetch() ---------------------------------------------------------------------------------


def fetch(url: str, headers: HeadersInit = None, method: str = "GET",
          body: Union[str, bytes, bytearray, memoryview, None] = None, *,
          timeout: Optional[float] = 30.0, **options: Any) -> Response:
    """Send an HTTP request, as a Worker's ``fetch()`` (RULES K9–K11).

    With ``headers={"Upgrade": "websocket"}`` it asks for a WebSocket: a ``101`` answer
    gives a response whose ``web_socket`` is an end that must be ``accept()``-ed
    (optionally ``allow_half_open=True``, for proxies), as a pair end; no
    ``Sec-WebSocket-Extensions`` is sent unless given.  Any other answer gives
    ``web_socket = None`` with the server's status, headers and body.  Redirects are not
    followed.  Other options: ``compatibility_date``, ``compatibility_flags`` (for the
    socket), ``ssl_context``, ``max_message_size``, ``close_timeout``, ``max_queue``,
    ``ping_interval``, ``ping_timeout``, ``receive_buffer``.

    :param url: an http:// or https:// URL.
    :param headers: request headers.
    :param method: the HTTP method.
    :param body: the request body.
    :param timeout: seconds for connecting and reading the answer (its head, and a
        plain response's body).
    :returns: a :class:`~cfws_sync.Response`.
    :raises TypeError: ``Fetch API cannot load: <url>`` for a URL that is not http or
        https, ws:// included (K11).
    :raises ConnectError: the request could not be made or answered.
    """
    from .websocket import current_compatibility_for

    target = http_target(url)  # K11
    compat = current_compatibility_for(options)
    options["open_timeout"] = timeout
    if "headers" in options:
        raise TypeError("fetch() got multiple values for argument 'headers'")
    opts = ClientOptions(options, "fetch()", compat)
    request = Headers(headers)
    method = method.upper()
    upgrade = (request.get("Upgrade") or "").lower() == "websocket"
    key = request.get("Sec-WebSocket-Key") or new_key()
    if upgrade:
        for name, value in (("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
                            ("Sec-WebSocket-Version", "13")):
            if name not in request:
                request.set(name, value)
    elif "connection" not in request:
        request.set("Connection", "close")
    payload = body.encode("utf-8") if isinstance(body, str) else (
        None if body is None else bytes(memoryview(body)))
    if payload is not None:
        request.set("Content-Length", str(len(payload)))
    deadline = None if timeout is None else time.monotonic() + timeout
    with failures("cannot connect to %s" % target.url):
        sock = open_socket(target, opts.ssl_context, deadline)
    try:
        with failures("the request to %s failed" % target.url):
            head, early = exchange(
                sock, request_head(method, target, request) + (payload or b""), deadline)
        if head.status == 101 and upgrade:
            ws = _fetched_socket(sock, head, early, key, request, opts, compat)
            return Response(None, 101, head.headers, head.reason, web_socket=ws)
        with failures("reading the body from %s failed" % target.url):
            data = read_body(sock, head, early, method, deadline)
    except BaseException:
        sock.close()
        raise
    sock.close()
    if not 200 <= head.status <= 599:
        raise ConnectError("%s answered with status %d, which fetch() cannot return"
                           % (target.url, head.status))
    return Response(data or None if head.status not in (204, 304) else None,
                    head.status, head.headers, head.reason)


def _fetched_socket(sock: socket.socket, head: Head, early: bytes, key: str,
                    request: Headers, opts: ClientOptions,
                    compat: Compatibility) -> "WebSocket":
    """K9: the end of a fetch() upgrade, accept-gated like a pair end."""
    from .websocket import WebSocket

    deflate_offered = "permessage-deflate" in (request.get("Sec-WebSocket-Extensions") or "")
    try:
        _, _, deflate = check_upgrade(head, key, None, deflate_offered)
    except ValueError as exc:
        raise HandshakeError(101, str(exc), head.headers) from None
    ws = WebSocket._pair_end(compat)  # K9: rs 1, url None, protocol "", extensions ""
    inbox_of(ws).keep(opts.receive_buffer)
    connection = Connection(sock, ws, WireCodec(True, deflate, opts.max_message_size),
                            opts.connection)
    ws._machine.link = connection
    _runtime.spawn(_serve, connection, early)
    return ws


def _serve(connection: Connection, early: bytes) -> None:
    try:
        connection.run(early)
    finally:
        connection.sock.close()
