"""A WebSocket connection on a real socket: the network peer of one end.

Reading
    :meth:`Connection.run` runs in the caller's greenlet or thread (the WSGI request, or
    a client's reader).  It reads up to 64 KiB at a time, feeds the wire codec, answers
    pings, and posts each event to the end, whose listeners then run right there: no
    thread hop and no extra copy per message.

Writing
    Writes never block the caller (SPEC §2).  A frame is offered to the kernel without
    waiting, under one short leaf lock (so frames never interleave); whatever the kernel
    does not take is queued, and a drain task (a greenlet or a thread, alive only while
    there is a backlog) writes the queue in order with ``sendall``.  The queue is bounded
    by ``max_queue`` bytes: past it, the peer is too slow to keep, and the connection is
    dropped (the end gets ``close`` 1006 with :data:`SLOW_PEER_REASON`).

Ending
    Once the end's state machine is done with the connection (:meth:`finish`), the queue
    is flushed, then our side is shut down (FIN) while the reader keeps reading until the
    peer's FIN, so that the peer reads EOF and never a reset (RFC 6455 §7.1.1: the server
    closes TCP first).  A peer that does not close within ``close_timeout`` is cut off.
    A Close we sent that is not answered within ``close_timeout`` drops the connection
    (SPEC §8.4).  Keepalive pings, when enabled, drop a peer that stops answering.
    When :meth:`run` returns, no task of this connection is left running.
"""

from __future__ import annotations

import collections
import logging
import socket
import struct
import ssl
import threading
import time
from typing import Any, Callable, Optional, Union

from . import _runtime
from ._frames import Failure, Message, Outgoing, PeerClose, Ping, WireCodec
from ._protocol import Gone, Inbound

__all__ = ["Connection", "ConnectionOptions"]

log = logging.getLogger("cfws_sync")

#: Bytes asked of the kernel per read.  Under glibc's mmap threshold (128 KiB) on
#: purpose: a larger ``recv`` maps, faults and unmaps a fresh buffer on every call,
#: about 15 µs even when 70 bytes arrive.
READ_SIZE = 64 * 1024
#: Queued frames are joined into writes of up to this many bytes.
DRAIN_JOIN = 256 * 1024
#: The ``close`` reason when our Close got no answer in time (SPEC §8.4).
CLOSE_TIMEOUT_REASON = "WebSocket closing handshake timed out."
#: The ``close`` reason when the send queue passed ``max_queue``.
SLOW_PEER_REASON = "WebSocket peer too slow: send queue over max_queue bytes."
#: The ``close`` reason when a keepalive ping got no answer in time.
KEEPALIVE_REASON = "WebSocket keepalive ping timed out."
_KEEPALIVE_PAYLOAD = b"cfws-keepalive"


class ConnectionOptions:
    """The per-connection options of SPEC §5, with their defaults.

    :param close_timeout: seconds to wait for the peer's answer to our Close, and for
        the peer to close TCP after the close handshake.
    :param max_queue: bytes that may wait to be written before the peer is dropped.
    :param ping_interval: seconds between keepalive pings; ``None`` sends none.
    :param ping_timeout: seconds to wait for any data after a ping before the peer is
        dropped; ``ping_interval`` by default.
    :raises ValueError: for a value that is not a positive number.
    """

    __slots__ = ("close_timeout", "max_queue", "ping_interval", "ping_timeout")

    def __init__(self, close_timeout: float = 10.0, max_queue: int = 64 << 20,
                 ping_interval: Optional[float] = None,
                 ping_timeout: Optional[float] = None) -> None:
        for name, value in (("close_timeout", close_timeout), ("max_queue", max_queue),
                            ("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError("%s must be a positive number, not %r" % (name, value))
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout if ping_timeout is not None else ping_interval


class Connection:
    """The network peer of ``end`` over ``sock`` (a :class:`~._protocol.Link`).

    :param sock: a connected socket (gevent's or the standard library's).
    :param end: the end whose peer is this connection; what arrives is posted to it.
    :param codec: the wire codec, set up for this side and the negotiated extensions.
    :param options: timeouts and bounds.
    """

    # Slots: thousands of idle connections each keep one.
    __slots__ = ("sock", "end", "codec", "options", "_raw", "_flags", "_wlock", "_queue",
                 "_queued", "_draining", "_finishing", "_failed", "_closed_out", "_dead",
                 "_timer", "_ended", "_keepalive_wake", "_drained", "_last_read",
                 "_output_shut")

    def __init__(self, sock: socket.socket, end: Any, codec: WireCodec,
                 options: Optional[ConnectionOptions] = None) -> None:
        self.sock = sock
        self.end = end
        self.codec = codec
        self.options = options or ConnectionOptions()
        sock.settimeout(None)  # the reader blocks; writes never do (see _send_now)
        self._raw, self._flags = _nonblocking(sock)
        self._wlock = _runtime.leaf_lock()  # guards the write state only
        # What the kernel did not take yet, made on first use (an idle socket has none).
        self._queue: Optional[collections.deque[Union[bytes, memoryview]]] = None
        self._queued = 0
        self._draining = False  # a drain task owns the socket's write side
        self._finishing = False  # the end is done: shut down once flushed
        self._failed = False  # the peer failed the protocol: the reader ends the connection
        self._closed_out = False  # a Close frame was queued: no frame may follow it
        self._dead = False  # nothing more will be written
        self._timer: Optional[_runtime.Timer] = None
        self._ended = False  # the reader has ended
        # Set when the reader ends: what the keepalive task waits on (made if it runs).
        self._keepalive_wake: Optional[threading.Event] = None
        # Set once the running drain task has written the backlog; made for the first
        # one (an idle socket, or one that never had a backlog, has none).
        self._drained: Optional[threading.Event] = None
        self._last_read = time.monotonic()
        self._output_shut = False  # our FIN was sent

    # -- the Link side: may be called with the end's lock held; never blocks ---------------

    def message(self, data: Union[str, bytes]) -> None:
        """Send one message."""
        self._write(self.codec.message_parts(data))

    def close(self, code: Optional[int], reason: str) -> None:
        """Send a Close frame; when it opens the handshake, wait ``close_timeout`` for
        the answer (SPEC §8.4)."""
        self._write(self.codec.close(code, reason), closing=True)
        if not self.codec.finished:  # our Close opens the handshake
            self._arm(self.options.close_timeout, self._close_timed_out)

    def finish(self) -> None:
        """The end is done: flush what is queued, then end the connection."""
        with self._wlock:
            self._finishing = True
            if self._draining or self._failed:
                return  # the drain, or the reader after a failure, ends the connection
        self._end_output()

    def cancel(self) -> None:
        """Nothing to cancel: the connection is already open."""

    def replay(self, item: Inbound) -> None:
        """Send what the partner end sent before this connection existed."""
        if isinstance(item, Message):
            self.message(item.data)
        elif isinstance(item, PeerClose):
            self.close(None if item.code == 1005 else item.code, item.reason)

    # -- reading ----------------------------------------------------------------------------

    def run(self, initial: bytes = b"") -> None:
        """Read until the connection ends, posting every event to the end.  Blocks.

        :param initial: bytes already read from the socket (read ahead by the server).
        """
        # (No bound methods kept in locals: a parked reader's frame would keep them,
        # 64 bytes each, for as long as the connection is idle.)
        sock, codec, end = self.sock, self.codec, self.end
        share = _runtime.fair_yield()
        keepalive = self.options.ping_interval is not None
        if keepalive:
            self._keepalive_wake = threading.Event()
            _runtime.spawn(self._keepalive)
        count = len(initial)
        try:
            events = codec.receive(initial) if count else []
            while True:
                if events:
                    self._received(events, end._post)
                    if self._failed:
                        break  # RFC 6455 §7.1.7: a failure ends TCP at once
                if count and share is not None and not codec.finished:
                    share()  # other connections get a turn before we read again
                try:
                    if codec.pending_size >= READ_SIZE:  # a large frame: read it in place
                        count = sock.recv_into(codec.pending_view())
                        events = codec.received_into(count) if count else []
                    else:
                        data = sock.recv(READ_SIZE)
                        count = len(data)
                        # B9, L2: after a Close, read but ignore
                        events = codec.receive(data) if count else []
                except OSError:
                    break  # a reset, or our own shutdown
                if not count:
                    break  # EOF
                if keepalive:
                    self._last_read = time.monotonic()
        finally:
            self._flush_if_clean()
            with self._wlock:
                self._dead = True
                self._queue = None
            self._ended = True
            if self._keepalive_wake is not None:
                self._keepalive_wake.set()
            self._disarm()
            end._post(Gone(), True)  # H1: a drop; ignored after a clean close
            if self._failed and _unread(self.sock):
                # RULES E5: a peer still writing when the connection fails gets a reset,
                # as from workerd, which closes with its payload unread.
                _reset(self.sock)
            elif count or not self._output_shut:  # (both ways shut: nothing left to do)
                _shutdown(self.sock, socket.SHUT_RDWR)

    def _flush_if_clean(self) -> None:
        """After a clean close, give a backlog (our Close echo, say) ``close_timeout``
        to reach a peer that sent its FIN right behind its Close."""
        with self._wlock:
            flushing = self._draining and not self._dead and self.codec.finished
            drained = self._drained
        if flushing and drained is not None:
            drained.wait(self.options.close_timeout)

    def _received(self, events: list[Any], post: Callable[[Any, bool], None]) -> None:
        """Act on what was read; a protocol failure is the last event acted on."""
        for event in events:
            kind = type(event)
            if kind is Ping:
                self._write(self.codec.pong(event.payload))  # L1
                continue
            if kind is Failure:  # E2, M4: Close with the reason, then end TCP
                self._write(self.codec.close(event.code, event.reason), closing=True)
                self._failed = True  # the reader ends the connection, not finish()
                post(event, True)
                return
            post(event, True)

    # -- writing ----------------------------------------------------------------------------

    def _write(self, data: Outgoing, closing: bool = False) -> None:
        with self._wlock:
            if self._dead or self._closed_out:
                return  # RFC 6455 §5.5.1: nothing after our Close
            if closing:
                self._closed_out = True
            if self._draining:
                self._enqueue(data, 0)
                if self._queued > self.options.max_queue:
                    self._drop_locked(SLOW_PEER_REASON)
                return
            try:
                sent = self._send_now(data)  # never waits, so it may run under the lock
            except OSError:
                sent = -1
            size = len(data) if isinstance(data, bytes) else len(data[0]) + len(data[1])
            if 0 <= sent < size:
                self._enqueue(data, sent)
                self._draining = True
                if self._drained is None:
                    self._drained = threading.Event()
                else:
                    self._drained.clear()
        if sent < 0:
            self._lost()
        elif sent < size:
            _runtime.spawn(self._drain)

    def _send_now(self, data: Outgoing) -> int:
        """Offer ``data`` to the kernel without waiting; return the count it took.

        A frame in two parts (header, large payload) goes out in one ``sendmsg``, so
        the payload is never copied to join them.
        """
        raw = self._raw
        if raw is None:
            return 0  # TLS: the drain task writes
        try:
            if type(data) is bytes:
                return int(raw.send(data, self._flags))
            return int(raw.sendmsg(data, (), self._flags))
        except BlockingIOError:
            return 0

    def _enqueue(self, data: Outgoing, sent: int) -> None:
        """Queue what the kernel did not take of ``data`` (without copying a payload)."""
        if self._queue is None:
            self._queue = collections.deque()
        parts: tuple[bytes, ...] = (data,) if isinstance(data, bytes) else data
        for part in parts:
            if sent >= len(part):
                sent -= len(part)
                continue
            rest = memoryview(part)[sent:] if sent else part
            sent = 0
            self._queue.append(rest)
            self._queued += len(rest)

    def _drain(self) -> None:
        sendall = self.sock.sendall
        while True:
            with self._wlock:
                if not self._queue or self._dead:
                    self._queue = None  # a burst's queue is not kept
                    self._draining = False
                    self._mark_drained()
                    finishing = self._finishing and not self._dead
                    break
                chunk = self._next_chunk()
            try:
                sendall(chunk)
            except OSError:
                self._lost()
                return
        if finishing:
            self._end_output()

    def _mark_drained(self) -> None:
        """No drain task runs any more (called with the write lock held)."""
        if self._drained is not None:
            self._drained.set()

    def _next_chunk(self) -> Union[bytes, memoryview]:
        """Take what to write next: small frames joined (fewer system calls), a large
        one alone (no copy)."""
        queue = self._queue
        assert queue is not None
        chunk = queue.popleft()
        if queue and len(chunk) < DRAIN_JOIN:
            parts, size = [chunk], len(chunk)
            while queue and size + len(queue[0]) <= DRAIN_JOIN:
                part = queue.popleft()
                parts.append(part)
                size += len(part)
            chunk = b"".join(parts)
        self._queued -= len(chunk)
        return chunk

    # -- ending -----------------------------------------------------------------------------

    def _end_output(self) -> None:
        """Everything is written: send FIN, and give the peer ``close_timeout`` to close."""
        _shutdown(self.sock, socket.SHUT_WR)
        self._output_shut = True
        if not self._ended:
            self._arm(self.options.close_timeout, self._cut)

    def _cut(self) -> None:
        """Stop the reader: the peer did not close TCP in time."""
        _shutdown(self.sock, socket.SHUT_RDWR)

    def _drop_locked(self, reason: str) -> None:
        self._dead = True
        self._queue = None
        self._queued = 0
        _runtime.spawn(self._drop, reason)

    def _drop(self, reason: str) -> None:
        """End the connection without a Close; the end gets ``close`` 1006 (H1)."""
        log.warning("dropping WebSocket connection: %s", reason)
        with self._wlock:
            self._dead = True
        self.end._post(Gone(reason))
        _shutdown(self.sock, socket.SHUT_RDWR)

    def _lost(self) -> None:
        with self._wlock:
            self._dead = True
            self._queue = None
            self._draining = False
            self._mark_drained()
        _shutdown(self.sock, socket.SHUT_RDWR)  # the reader sees it and reports the drop

    def _close_timed_out(self) -> None:
        self._drop(CLOSE_TIMEOUT_REASON)  # SPEC §8.4: close 1006

    def _arm(self, delay: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` after ``delay`` unless the reader ends first; replaces any timer."""
        timer = _runtime.spawn_later(delay, fn)
        previous, self._timer = self._timer, timer
        if previous is not None:
            previous.cancel()
        if self._ended:
            self._disarm()

    def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _keepalive(self) -> None:
        interval = self.options.ping_interval
        timeout = self.options.ping_timeout
        assert interval is not None and timeout is not None
        ended = self._keepalive_wake
        assert ended is not None
        while not ended.wait(interval):
            if self.codec.finished or self._closed_out:
                return  # closing: the close timeout watches the peer now
            sent_at = time.monotonic()
            self._write(self.codec.ping(_KEEPALIVE_PAYLOAD))
            if ended.wait(timeout):
                return
            if self._last_read < sent_at:
                self._drop(KEEPALIVE_REASON)
                return


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass  # already shut down, or reset


def _unread(sock: Any) -> bool:
    """Whether the peer has sent bytes we have not read (never waits)."""
    raw = getattr(sock, "_sock", sock)  # gevent's socket would wait on EAGAIN; its own won't
    try:
        return bool(raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, OSError, ValueError):
        return False


def _reset(sock: Any) -> None:
    """End the connection with a TCP reset: linger 0, then close."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _nonblocking(sock: Any) -> tuple[Any, int]:
    """The socket to offer writes to without waiting, and the flags for that; ``None``
    for TLS, which cannot send without waiting (no flags, and a record is all or
    nothing), so that for it everything goes through the drain task."""
    gevent_socket = _runtime.gevent_socket_class()
    # gevent's plain socket first: hasattr() on it costs a failed lookup on the socket
    # it wraps, and its TLS subclass is not exactly it.
    plain_gevent = gevent_socket is not None and type(sock) is gevent_socket
    if not plain_gevent and (isinstance(sock, ssl.SSLSocket) or hasattr(sock, "cipher")):
        return None, 0
    if plain_gevent or (gevent_socket is not None and isinstance(sock, gevent_socket)):
        # gevent keeps the socket it wraps non-blocking: calling it directly never waits.
        return sock._sock, 0
    return sock, socket.MSG_DONTWAIT  # one attempt, no wait
