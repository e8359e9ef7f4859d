"""Helpers for the core's tests: an event recorder, a raw frame writer and reader, and a
pair end served over a ``socket.socketpair()``.

The raw frame functions are written from RFC 6455 §5.2 independently of
``cfws_sync._frames``, so that tests can check the codec's bytes against them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple, Optional

from cfws_sync import WebSocketPair, compatibility
from cfws_sync._connection import Connection, ConnectionOptions
from cfws_sync._frames import WireCodec

TIMEOUT = 5.0  # seconds any single wait in these tests may take

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


# -- events --------------------------------------------------------------------------------


class Seen(NamedTuple):
    """One dispatched event: which socket (``tag``), its type, ``ready_state`` during
    dispatch, and the event object."""

    tag: str
    type: str
    rs: int
    event: Any


class Recorder:
    """Records every event of the sockets it watches, in dispatch order."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._cond = threading.Condition()

    def watch(self, ws: Any, tag: str,
              types: tuple[str, ...] = ("open", "message", "close", "error")) -> Any:
        for kind in types:
            ws.add_event_listener(kind, lambda event, ws=ws: self.record(tag, ws, event))
        return ws

    def record(self, tag: str, ws: Any, event: Any) -> None:
        with self._cond:
            self.seen.append(Seen(tag, event.type, ws.ready_state, event))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Seen]], bool],
                 timeout: float = TIMEOUT) -> list[Seen]:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self.seen), timeout)
            assert ok, "timed out; events so far: %r" % (self.seen,)
            return list(self.seen)

    def wait_count(self, n: int, timeout: float = TIMEOUT) -> list[Seen]:
        return self.wait_for(lambda seen: len(seen) >= n, timeout)

    def wait_event(self, tag: str, kind: str, timeout: float = TIMEOUT) -> Seen:
        self.wait_for(lambda seen: any(s.tag == tag and s.type == kind for s in seen),
                      timeout)
        return next(s for s in self.seen if s.tag == tag and s.type == kind)

    def of(self, tag: Optional[str] = None, kind: Optional[str] = None) -> list[Seen]:
        with self._cond:
            return [s for s in self.seen
                    if (tag is None or s.tag == tag) and (kind is None or s.type == kind)]

    def summary(self) -> list[tuple[Any, ...]]:
        """``(tag, type, rs, detail)`` with the message data or the close code and reason."""
        out: list[tuple[Any, ...]] = []
        for s in list(self.seen):
            event = s.event
            if s.type == "message":
                detail: Any = event.data
            elif s.type == "close":
                detail = (event.code, event.reason, event.was_clean)
            elif s.type == "error":
                detail = event.message
            else:
                detail = None
            out.append((s.tag, s.type, s.rs, detail))
        return out


def settle(*sockets: Any, timeout: float = TIMEOUT) -> None:
    """Wait until no socket has an event left to deliver, then a little longer, so that a
    test can check that something did *not* happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = any(ws._pumping or (ws._mailbox and ws._machine.accepted) for ws in sockets)
        if not busy:
            time.sleep(0.05)
            if not any(ws._pumping or (ws._mailbox and ws._machine.accepted)
                       for ws in sockets):
                return
        time.sleep(0.01)
    raise AssertionError("sockets still busy after %ss" % timeout)


def make_pair(date: Optional[str] = None, flags: tuple[str, ...] = ()) -> WebSocketPair:
    with compatibility(date=date, flags=flags):
        return WebSocketPair()


# -- raw frames (RFC 6455 §5.2) ------------------------------------------------------------


def mask_bytes(key: bytes, payload: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big")


def build_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
                mask: bool = True, length: Optional[int] = None) -> bytes:
    """One frame; ``rsv`` is the 3 RSV bits (4 = RSV1); ``length`` may lie about the size."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length is None else length
    bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + mask_bytes(key, payload)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawFrame(NamedTuple):
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> Optional[int]:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> bytes:
        return self.payload[2:]


class FrameReader:
    """Reads whole frames from a socket, unmasking them; ``None`` at EOF."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within the timeout")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return False
            if not data:
                return False
            self.buffer += data
        return True

    def read(self, timeout: float = TIMEOUT) -> Optional[RawFrame]:
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        first, second = self.buffer[0], self.buffer[1]
        n, at = second & 0x7F, 2
        if n == 126:
            if not self._fill(4, deadline):
                return None
            n, at = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif n == 127:
            if not self._fill(10, deadline):
                return None
            n, at = struct.unpack("!Q", self.buffer[2:10])[0], 10
        masked = bool(second & 0x80)
        key = b""
        if masked:
            if not self._fill(at + 4, deadline):
                return None
            key, at = self.buffer[at:at + 4], at + 4
        if not self._fill(at + n, deadline):
            return None
        payload, self.buffer = self.buffer[at:at + n], self.buffer[at + n:]
        if masked:
            payload = mask_bytes(key, payload)
        return RawFrame(bool(first & 0x80), (first >> 4) & 7, first & 0x0F, masked, payload)

    def read_eof(self, timeout: float = TIMEOUT) -> bool:
        """Whether the peer closed TCP (rather than sending more) within ``timeout``."""
        try:
            return self.read(timeout) is None
        except TimeoutError:
            return False


# -- a pair end served over a socketpair ---------------------------------------------------


class Served(NamedTuple):
    """A pair end bound to one side of a socketpair; the test drives the other side."""

    server: Any  # the accepted end the test's "handler" uses
    peer: socket.socket  # the remote side: write raw frames, read with ``reader``
    reader: FrameReader
    connection: Connection
    done: threading.Event  # set when the connection's reader returned


@contextlib.contextmanager
def served_pair(setup: Callable[[Any], None], *, date: Optional[str] = None,
                flags: tuple[str, ...] = (), max_message_size: Optional[int] = None,
                options: Optional[ConnectionOptions] = None) -> Iterator[Served]:
    """Build a pair, let ``setup(server)`` accept and attach listeners (the handler's
    turn), bind the other end to one side of a socketpair as the serving layer does,
    and run its reader in the background."""
    from cfws_sync import _runtime

    pair = make_pair(date, flags)
    client, server = pair
    with _runtime.in_turn():
        setup(server)
    ours, peer = socket.socketpair()
    kwargs = {} if max_message_size is None else {"max_message_size": max_message_size}
    codec = WireCodec(False, None, **kwargs)
    partner = client._release()
    connection = Connection(ours, partner, codec, options or ConnectionOptions(close_timeout=3))
    client._couple(partner, connection, connection.replay)
    done = threading.Event()

    def run() -> None:
        try:
            connection.run()
        finally:
            done.set()

    _runtime.spawn(run)
    try:
        yield Served(server, peer, FrameReader(peer), connection, done)
    finally:
        with contextlib.suppress(OSError):
            peer.close()
        done.wait(TIMEOUT)
        ours.close()
        assert done.is_set(), "the connection's reader did not end"
