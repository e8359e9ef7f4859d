"""``Connection``, the I/O layer, driven over ``socket.socketpair()``.

One side is a :class:`~cfws_sync._connection.Connection` serving an app end of a
``WebSocketPair``, its reader running in a thread (a greenlet under ``CFWS_GEVENT=1``);
the other side is the raw-frame peer of ``tests/rawclient.py``.
"""

from __future__ import annotations

import gc
import queue
import socket
import threading
import time

import pytest

from cfws_sync import WebSocketPair
from cfws_sync._connection import (CLOSE_TIMEOUT_REASON, KEEPALIVE_REASON, READ_SIZE,
                                   SLOW_PEER_REASON, Connection, ConnectionOptions)
from cfws_sync._frames import WireCodec
from tests.rawclient import BINARY, CLOSE, PING, PONG, TEXT, RawClient, make_frame

DROPPED = "WebSocket disconnected without sending Close frame."


class Served:
    """An app end served by a Connection on one end of a socketpair; ``peer`` is the
    other end.  ``events`` receives every event the app end dispatches."""

    def __init__(self, client_codec: bool = False, initial: bytes = b"", sock=None,
                 **options) -> None:
        ours, theirs = socket.socketpair()
        self.sock = sock(ours) if sock is not None else ours
        self.peer = RawClient(theirs, timeout=5)
        self.events: queue.Queue = queue.Queue()
        client, self.app = WebSocketPair()
        for kind in ("message", "close", "error"):
            self.app.add_event_listener(kind, self.events.put)
        self.app.accept()
        partner = client._release()
        assert partner is self.app
        self.codec = WireCodec(client_codec)
        self.conn = Connection(self.sock, self.app, self.codec, ConnectionOptions(**options))
        client._couple(self.app, self.conn, self.conn.replay)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(initial,), daemon=True)
        self.thread.start()

    def _run(self, initial: bytes) -> None:
        try:
            self.conn.run(initial)
        finally:
            self.done.set()

    def event(self, timeout: float = 5.0):
        return self.events.get(timeout=timeout)

    def wait_done(self, timeout: float = 5.0) -> None:
        assert self.done.wait(timeout), "the reader did not end"
        self.thread.join(timeout)

    def close(self) -> None:
        self.peer.abort()
        self.wait_done()
        self.sock.close()


@pytest.fixture
def served():
    made = []

    def make(**options) -> Served:
        made.append(Served(**options))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_messages_both_ways(served):
    s = served()
    s.peer.text("hi")
    assert s.event().data == "hi"
    s.app.send(b"\x00\x01")
    s.app.send("t")
    assert s.peer.recv()[:2] == (BINARY, b"\x00\x01")
    assert s.peer.recv()[:2] == (TEXT, b"t")


def test_reads_at_least_64KiB_at_a_time(served):
    sizes = []

    class Recording:
        def __init__(self, sock):
            self._sock = sock

        def recv(self, n):
            sizes.append(n)
            return self._sock.recv(n)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    s = served(sock=Recording)
    s.peer.binary(bytes(300_000))
    assert len(s.event().data.bytes()) == 300_000
    assert READ_SIZE >= 64 * 1024
    assert sizes and min(sizes) >= 64 * 1024


def test_initial_bytes_are_read_first(served):
    s = served(initial=make_frame(TEXT, b"early"))
    assert s.event().data == "early"
    s.peer.text("later")
    assert s.event().data == "later"


def test_write_order_kept_across_threads_and_pongs(served):
    # Four threads send while the peer pings: every frame arrives whole (never
    # interleaved with another) and each thread's messages keep their order.
    s = served()
    count = 300

    def sender(n: int) -> None:
        for i in range(count):
            s.app.send("%d:%d:%s" % (n, i, "x" * (i * 37 % 3000)))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for i in range(50):
        s.peer.ping(b"%d" % i)
    seen = {n: -1 for n in range(4)}
    pongs = 0
    while sum(seen.values()) < 4 * (count - 1) or pongs < 50:
        frame = s.peer.recv()
        if frame.opcode == PONG:
            assert frame.payload == b"%d" % pongs
            pongs += 1
            continue
        n, i, pad = frame.text.split(":")
        assert int(i) == seen[int(n)] + 1 and len(pad) == int(i) * 37 % 3000
        seen[int(n)] = int(i)
    for t in threads:
        t.join(5)


def test_send_never_blocks_on_a_peer_that_does_not_read(served):
    # 16 MiB queued while the peer reads nothing: send() returns every time (the test
    # would hang otherwise); then the peer reads it all, in order.
    s = served()
    chunk = bytes(range(256)) * 4096  # 1 MiB
    for i in range(16):
        s.app.send(bytes([i]) + chunk)
    s.app.close(1000, "done")
    for i in range(16):
        frame = s.peer.recv(timeout=10)
        assert frame.payload[:1] == bytes([i]) and frame.payload[1:] == chunk
    frame = s.peer.recv()
    assert (frame.opcode, frame.close_code) == (CLOSE, 1000)
    s.peer.close(1000)
    s.peer.expect_eof()  # after the flush and the handshake: FIN
    assert s.event().code == 1000
    s.peer.abort()  # the peer closes its side in turn: the reader ends
    s.wait_done()


def test_max_queue_drops_a_slow_peer(served):
    s = served(max_queue=1 << 20)
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    chunk = bytes(256 << 10)
    for _ in range(64):  # 16 MiB: far past the kernel buffers and max_queue
        s.app.send(chunk)  # once dropped, the end sends into nothing (as after any drop)
    event = s.event()
    assert (event.type, event.code, event.reason, event.was_clean) == (
        "close", 1006, SLOW_PEER_REASON, False)
    s.peer.read_until_eof(timeout=10)
    s.wait_done()
    s.app.send("after")  # gone: reaches no one, and does not raise (as in workerd)
    assert s.app.ready_state == 3


def test_close_timeout(served):
    s = served(close_timeout=0.3)
    s.app.close(4000, "bye")
    frame = s.peer.recv()
    assert (frame.close_code, frame.close_reason) == (4000, b"bye")
    event = s.event()  # the peer never answers
    assert (event.code, event.reason, event.was_clean) == (1006, CLOSE_TIMEOUT_REASON, False)
    s.peer.expect_eof()
    s.wait_done()


def test_peer_answers_close_then_fin_first(served):
    s = served()
    s.app.close(1000)
    assert s.peer.recv().close_code == 1000
    s.peer.close(1000, "ok")
    s.peer.expect_eof()
    assert (s.event().code, s.app.ready_state) == (1000, 3)
    s.peer.abort()
    s.wait_done()


def test_backlog_and_close_echo_reach_a_peer_that_sent_fin_after_close(served):
    s = served()
    s.app.send(bytes(8 << 20))  # more than the socket buffers hold: a backlog
    s.peer.close(1000, "bye")
    s.peer.half_close()  # FIN right behind the Close, still reading
    frame = s.peer.recv(timeout=10)
    assert (frame.opcode, len(frame.payload)) == (BINARY, 8 << 20)
    frame = s.peer.recv()
    assert (frame.close_code, frame.close_reason) == (1000, b"bye")
    s.peer.expect_eof()
    assert s.event().code == 1000
    s.wait_done()


def test_a_peer_that_never_closes_tcp_is_cut_after_close_timeout(served):
    # After the close handshake our FIN goes out at once; a peer that keeps its side
    # open does not keep the reader past close_timeout.
    s = served(close_timeout=0.3)
    s.peer.close(1000)
    assert s.peer.recv().close_code == 1000
    s.peer.expect_eof()
    s.wait_done()


@pytest.mark.parametrize("how", ["fin", "rst", "mid-frame"])
def test_H1_drop(served, how):
    s = served()
    if how == "rst":
        s.peer.reset()
    else:
        if how == "mid-frame":
            s.peer.send_raw(make_frame(BINARY, bytes(100))[:50])
        s.peer.half_close()
    event = s.event()
    assert (event.type, event.code, event.reason, event.was_clean) == (
        "close", 1006, DROPPED, False)
    s.wait_done()
    with pytest.raises(queue.Empty):
        s.events.get(timeout=0.1)  # one close event, no error event


def test_protocol_error_close_then_fin_and_nothing_after(served):
    s = served()
    s.peer.send_raw(make_frame(TEXT, b"x", rsv=2))
    assert s.peer.recv().close_code == 1002
    try:
        s.app.send("too late")  # raises once the end has seen the failure; either way
    except TypeError:           # nothing may follow the Close on the wire
        pass
    s.peer.expect_eof()
    assert s.event().type == "error"
    s.peer.abort()
    s.wait_done()


def test_keepalive_pings_and_drops(served):
    s = served(ping_interval=0.1, ping_timeout=0.2)
    assert s.peer.recv()[:2] == (PING, b"cfws-keepalive")
    event = s.event()  # never answered
    assert (event.code, event.reason) == (1006, KEEPALIVE_REASON)
    s.wait_done()


def test_keepalive_keeps_an_answering_peer(served):
    s = served(ping_interval=0.1, ping_timeout=0.5)
    for _ in range(3):
        frame = s.peer.recv()
        assert frame.opcode == PING
        s.peer.send(PONG, frame.payload)
    assert s.app.ready_state == 1
    with pytest.raises(queue.Empty):
        s.events.get(timeout=0.05)


def test_client_side_masks_its_frames(served):
    s = served(client_codec=True)
    s.app.send("masked")
    frame = s.peer.recv()
    assert (frame.text, frame.masked) == ("masked", True)
    s.peer.send(TEXT, b"plain", mask=False)  # a server's frames are not masked
    assert s.event().data == "plain"


def test_no_task_left_after_the_connection_ends(served):
    def tasks() -> int:
        try:
            import greenlet
        except ImportError:  # pragma: no cover
            return 0
        gc.collect()
        live = sum(1 for g in gc.get_objects()
                   if isinstance(g, greenlet.greenlet) and not g.dead)
        return live + sum(1 for t in threading.enumerate() if t.name.startswith("cfws"))

    before = tasks()
    for how in ("clean", "drop", "timeout", "keepalive"):
        s = served(close_timeout=0.2, ping_interval=0.1)
        s.app.send(bytes(4 << 20))  # leaves a backlog: a drain task
        if how == "clean":
            s.peer.recv(timeout=10)
            s.peer.close(1000)
            s.peer.recv()
            s.peer.expect_eof()
        elif how == "drop":
            s.peer.reset()
        elif how == "timeout":
            s.app.close(1000)
        s.wait_done(timeout=10)
        s.sock.close()
    deadline = time.monotonic() + 5
    while tasks() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tasks() <= before


@pytest.mark.parametrize("bad", [0, -1, True, "1"])
def test_options_are_checked(bad):
    with pytest.raises(ValueError):
        ConnectionOptions(close_timeout=bad)
    with pytest.raises(ValueError):
        ConnectionOptions(max_queue=bad)


def test_option_defaults():
    options = ConnectionOptions(ping_interval=5)
    assert (options.close_timeout, options.max_queue, options.ping_timeout) == (
        10.0, 64 << 20, 5)
    assert ConnectionOptions().ping_interval is None


def test_replay_of_what_was_sent_before_coupling():
    ours, theirs = socket.socketpair()
    peer = RawClient(theirs)
    client, app = WebSocketPair()
    app.accept()
    app.send("before")
    app.close(4000, "early")
    partner = client._release()
    conn = Connection(ours, partner, WireCodec(False), ConnectionOptions(close_timeout=0.5))
    client._couple(partner, conn, conn.replay)
    thread = threading.Thread(target=conn.run, daemon=True)
    thread.start()
    try:
        assert peer.recv().text == "before"
        frame = peer.recv()
        assert (frame.close_code, frame.close_reason) == (4000, b"early")
        peer.close(4000)
        peer.expect_eof()
    finally:
        peer.abort()
        thread.join(5)
        ours.close()
    assert not thread.is_alive()
