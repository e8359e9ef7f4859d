"""A WebSocket connection on a real socket: the network peer of one end.

The reader runs in the caller's greenlet or thread (the WSGI request, or a client's
reader): it reads at least 64 KiB at a time, feeds the wire codec, answers pings, and
posts each event to the end, whose listeners then run right there: no thread hop per
message.

Writes never block the caller (SPEC §2): a frame is first offered to the socket without
waiting; whatever the kernel does not take is queued, and a drain task (a greenlet or a
thread, only while there is a backlog) writes it with ``sendall``.  The queue is bounded
by ``max_queue`` bytes: past it, the peer is too slow to keep, and the connection is
dropped (the end gets ``close`` 1006).

The connection ends (TCP shut down) once the end's state machine is done with it, after
everything queued was written, when the peer goes away, or when a Close we sent is not
answered within ``close_timeout`` (SPEC §8.4).
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Any, Callable, Optional, Union

from . import _runtime
from ._frames import Failure, Message, PeerClose, Ping, WireCodec
from ._protocol import Gone, Inbound

__all__ = ["Connection", "ConnectionOptions"]

log = logging.getLogger("cfws_sync")

READ_SIZE = 256 * 1024
CLOSE_TIMEOUT_REASON = "WebSocket closing handshake timed out."
SLOW_PEER_REASON = "WebSocket peer too slow: send queue over max_queue bytes."
KEEPALIVE_REASON = "WebSocket keepalive ping timed out."


class ConnectionOptions:
    """The per-connection options of SPEC §5, with their defaults.

    :param close_timeout: seconds to wait for the peer's answer to our Close.
    :param max_queue: bytes that may wait to be written before the peer is dropped.
    :param ping_interval: seconds between keepalive pings; ``None`` sends none.
    :param ping_timeout: seconds of silence after a ping before the peer is dropped.
    """

    __slots__ = ("close_timeout", "max_queue", "ping_interval", "ping_timeout")

    def __init__(self, close_timeout: float = 10.0, max_queue: int = 64 << 20,
                 ping_interval: Optional[float] = None,
                 ping_timeout: Optional[float] = None) -> None:
        for name, value in (("close_timeout", close_timeout), ("max_queue", max_queue),
                            ("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise ValueError("%s must be a positive number, not %r" % (name, value))
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout if ping_timeout is not None else ping_interval


class Connection:
    """The network peer of ``end`` over ``sock`` (a :class:`Link` for its machine).

    :param sock: a connected socket (gevent's or the standard library's).
    :param end: the end whose peer is this connection; what arrives is posted to it.
    :param codec: the wire codec, set up for this side and the negotiated extensions.
    :param options: timeouts and bounds.
    """

    def __init__(self, sock: socket.socket, end: Any, codec: WireCodec,
                 options: Optional[ConnectionOptions] = None) -> None:
        self.sock = sock
        self.end = end
        self.codec = codec
        self.options = options or ConnectionOptions()
        self._send_now = _nonblocking_sender(sock)
        self._wlock = threading.Lock()  # a leaf lock: guards the write queue only
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._writing = False
        self._finishing = False
        self._dead = False
        self._close_timer: Optional[_runtime.Timer] = None
        self._last_read = time.monotonic()

    # -- the Link side: called with the end's lock held; never blocks ----------------------

    def message(self, data: Union[str, bytes]) -> None:
        self._write(self.codec.message(data))

    def close(self, code: Optional[int], reason: str) -> None:
        self._write(self.codec.close(code, reason))
        if self._close_timer is None and not self.codec.finished:
            self._close_timer = _runtime.spawn_later(
                self.options.close_timeout, self._close_timed_out)

    def finish(self) -> None:
        """The end is done: shut TCP down once everything queued is written."""
        with self._wlock:
            self._finishing = True
            busy = self._writing
        if not busy:
            self._shutdown()

    def cancel(self) -> None:
        pass

    def replay(self, item: Inbound) -> None:
        """Send what the partner end sent before this connection existed."""
        if isinstance(item, Message):
            self.message(item.data)
        elif isinstance(item, PeerClose):
            self.close(None if item.code == 1005 else item.code, item.reason)

    # -- reading ----------------------------------------------------------------------------

    def run(self) -> None:
        """Read until the connection ends; post every event to the end.  Blocks."""
        recv, codec, post = self.sock.recv, self.codec, self.end._post
        keepalive = self._start_keepalive() is not None
        try:
            while True:
                try:
                    data = recv(READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                if keepalive:
                    self._last_read = time.monotonic()
                if codec.finished:
                    continue  # B9, L2: after a Close nothing is read, but EOF is watched
                for event in codec.receive(data):
                    if type(event) is Ping:
                        self._write(codec.pong(event.payload))  # L1
                        continue
                    if type(event) is Failure:  # M4, E2: Close with the reason, then TCP
                        self._write(codec.close(event.code, event.reason))
                        self.finish()
                    post(event, True)
        finally:
            self._timer_cancel()
            self._dead = True
            post(Gone(), True)  # H1: a drop; ignored after a clean close
            self._shutdown()

    # -- writing ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        with self._wlock:
            if self._dead:
                return
            if self._writing:
                self._queue.append(data)
                self._queued += len(data)
                if self._queued > self.options.max_queue:
                    self._drop_locked(SLOW_PEER_REASON)
                return
            self._writing = True
        try:
            sent = self._send_now(data)
        except OSError:
            self._lost()
            return
        with self._wlock:
            if sent < len(data):
                self._queue.appendleft(data[sent:])
                self._queued += len(data) - sent
                then = "drain"
            elif self._queue:
                then = "drain"
            else:
                self._writing = False
                then = "shutdown" if self._finishing else ""
        if then == "drain":
            _runtime.spawn(self._drain)
        elif then == "shutdown":
            self._shutdown()

    def _drain(self) -> None:
        sendall = self.sock.sendall
        while True:
            with self._wlock:
                if not self._queue or self._dead:
                    self._writing = False
                    finishing = self._finishing
                    break
                chunk = self._queue.popleft() if len(self._queue) == 1 else b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
            try:
                sendall(chunk)
            except OSError:
                self._lost()
                return
        if finishing:
            self._shutdown()

    # -- ending -----------------------------------------------------------------------------

    def _drop_locked(self, reason: str) -> None:
        self._dead = True
        self._queue.clear()
        log.warning("dropping WebSocket connection: %s", reason)
        _runtime.spawn(self._drop_now, reason)

    def _drop_now(self, reason: str) -> None:
        self.end._post(Gone(reason))
        self._shutdown()

    def _lost(self) -> None:
        with self._wlock:
            self._dead = True
            self._queue.clear()
            self._writing = False
        self._shutdown()  # the reader sees EOF and reports the drop

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self.end._post(Gone(CLOSE_TIMEOUT_REASON))  # SPEC §8.4: close 1006
        self._shutdown()

    def _timer_cancel(self) -> None:
        timer, self._close_timer = self._close_timer, None
        if timer is not None:
            timer.cancel()

    def _shutdown(self) -> None:
        self._timer_cancel()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _start_keepalive(self) -> Any:
        interval = self.options.ping_interval
        if interval is None:
            return None
        return _runtime.spawn(self._keepalive, interval, self.options.ping_timeout)

    def _keepalive(self, interval: float, timeout: float) -> None:
        while not self._dead:
            time.sleep(interval)
            if self._dead or self.codec.finished:
                return
            self._write(self.codec.ping(b"cfws"))
            time.sleep(timeout)
            if time.monotonic() - self._last_read > timeout + interval and not self._dead:
                self._drop_now(KEEPALIVE_REASON)
                return


def _nonblocking_sender(sock: Any) -> Callable[[bytes], int]:
    """A ``send`` that returns at once with the count the kernel took (maybe 0)."""
    try:
        from gevent.socket import socket as gevent_socket
    except ImportError:  # pragma: no cover
        gevent_socket = None
    if gevent_socket is not None and isinstance(sock, gevent_socket):
        def send(data: bytes) -> int:
            try:
                return int(sock.send(data, 0, 0.0))  # gevent: timeout 0 means don't wait
            except BlockingIOError:
                return 0
            except socket.timeout:
                return 0
        return send
    sock.settimeout(None)  # MSG_DONTWAIT on a blocking socket: one attempt, no wait

    def send_std(data: bytes) -> int:
        try:
            return sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
    return send_std
