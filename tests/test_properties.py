"""Random interleavings of ``accept``/``send``/``close`` and the peer's Close from several
threads (greenlets under gevent) never give two Close frames from one end, an event after
the close event, or a lost, duplicated or reordered message (SPEC §2, §7).

Each example is bounded: every join and wait has a timeout.
"""

import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.corekit import (
    CLOSE,
    TEXT,
    TIMEOUT,
    Recorder,
    build_frame,
    close_payload,
    make_pair,
    served_pair,
    settle,
)

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# One step of a thread's script: (operation, which end, a small argument).
step = st.tuples(st.sampled_from(["send", "send", "send", "close", "accept", "yield"]),
                 st.sampled_from([0, 1]), st.integers(0, 3))
scripts = st.lists(st.lists(step, max_size=12), min_size=1, max_size=3)


class CountingLink:
    """Passes every call on to an end's real link, counting the Close frames."""

    def __init__(self, link):
        self.link = link
        self.closes = 0

    def message(self, data):
        self.link.message(data)

    def close(self, code, reason):
        self.closes += 1
        self.link.close(code, reason)

    def finish(self):
        self.link.finish()

    def cancel(self):
        self.link.cancel()


def run_threads(bodies):
    """Start every body at once; wait for all, bounded."""
    start = threading.Barrier(len(bodies) + 1, timeout=TIMEOUT)
    errors = []

    def wrap(body):
        def run():
            try:
                start.wait()
                body()
            except BaseException as exc:  # reported by the test, not lost in a thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(b)) for b in bodies]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert errors == [], errors


def check_events(rec, tag):
    """At most one close event, and nothing after it."""
    kinds = [s.type for s in rec.of(tag)]
    assert "error" not in kinds, rec.summary()
    if "close" in kinds:
        assert kinds.count("close") == 1 and kinds[-1] == "close", kinds
        assert rec.of(tag, "close")[0].rs in (2, 3)


def check_messages(received, sent):
    """Every successful send arrives once; one thread's sends arrive in its order."""
    assert sorted(received) == sorted(sent), (received, sent)
    for origin in {m.rsplit(":", 1)[0] for m in sent}:
        numbers = [int(m.rsplit(":", 1)[1]) for m in received if m.startswith(origin + ":")]
        assert numbers == sorted(numbers), (origin, numbers)


@SETTINGS
@given(scripts=scripts, legacy=st.booleans())
def test_SPEC_2_pair_interleavings(scripts, legacy):
    client, server = ends = make_pair("2025-06-01" if legacy else None)
    tags = ("client", "server")
    rec = Recorder()
    for ws, tag in zip(ends, tags):
        rec.watch(ws, tag)
        ws._machine.link = CountingLink(ws._machine.link)
    sent = {tag: [] for tag in tags}
    sent_lock = threading.Lock()

    def body(n, script):
        def run():
            for i, (op, which, arg) in enumerate(script):
                ws, tag = ends[which], tags[which]
                if op == "send":
                    data = "t%d-%s:%d" % (n, tag, i)
                    try:
                        ws.send(data)
                    except TypeError:
                        continue  # not accepted yet, or closed: nothing was sent
                    with sent_lock:
                        sent[tag].append(data)
                elif op == "close":
                    try:
                        ws.close(4000 + n, "t%d" % n)
                    except TypeError:
                        pass  # not accepted yet
                elif op == "accept":
                    ws.accept(allow_half_open=(None, True, False, None)[arg])
                else:
                    time.sleep(0.001 * arg)
        return run

    run_threads([body(n, script) for n, script in enumerate(scripts)])
    for ws in ends:
        ws.accept()  # whatever waited in the pipe is delivered now (I3)
    settle(client, server)
    for ws, tag in zip(ends, tags):
        assert ws._machine.link.closes <= 1, "two Close frames from the %s" % tag
        check_events(rec, tag)
    check_messages([s.event.data for s in rec.of("server", "message")], sent["client"])
    check_messages([s.event.data for s in rec.of("client", "message")], sent["server"])


# -- a pair end bound to a connection on a socketpair ----------------------------------------


server_step = st.tuples(st.sampled_from(["send", "send", "close", "yield"]), st.integers(0, 3))
remote_script = st.tuples(st.integers(0, 8), st.one_of(st.none(), st.integers(0, 8)))


class Remote:
    """The far side of the socketpair: sends its messages and maybe a Close, reads every
    frame, and answers our Close if it has not sent one."""

    def __init__(self, served):
        self.served = served
        self.lock = threading.Lock()
        self.closed = False
        self.frames = []
        self.sent = []

    def send_close(self, code, reason):
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.served.peer.sendall(build_frame(CLOSE, close_payload(code, reason)))

    def act(self, count, close_after):
        for i in range(count):
            if close_after == i:
                self.send_close(1000, b"remote")
            with self.lock:
                if self.closed:
                    return
                self.served.peer.sendall(build_frame(TEXT, b"remote:%d" % i))
                self.sent.append("remote:%d" % i)
        if close_after is not None:
            self.send_close(1000, b"remote")

    def read(self):
        while True:
            frame = self.served.reader.read(TIMEOUT)
            if frame is None:
                return
            self.frames.append(frame)
            if frame.opcode == CLOSE:
                self.send_close(frame.close_code or 1000, b"reply")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts=st.lists(st.lists(server_step, max_size=10), min_size=1, max_size=3),
       remote=remote_script, half_open=st.booleans())
def test_SPEC_2_connection_interleavings(scripts, remote, half_open):
    rec = Recorder()
    sent = []
    sent_lock = threading.Lock()

    def setup(server):
        server.accept(allow_half_open=half_open)
        rec.watch(server, "server")

    with served_pair(setup) as served:
        server = served.server
        far = Remote(served)
        reader = threading.Thread(target=far.read)
        reader.start()

        def body(n, script):
            def run():
                for i, (op, arg) in enumerate(script):
                    if op == "send":
                        data = "t%d:%d" % (n, i)
                        try:
                            server.send(data)
                        except TypeError:
                            continue
                        with sent_lock:
                            sent.append(data)
                    elif op == "close":
                        server.close(4000 + n, "t%d" % n)
                    else:
                        time.sleep(0.001 * arg)
            return run

        bodies = [body(n, s) for n, s in enumerate(scripts)]
        bodies.append(lambda: far.act(*remote))
        run_threads(bodies)
        far.send_close(1000, b"end")  # the far side always ends its half
        rec.wait_event("server", "close")
        if server.ready_state == 2:
            server.close(1000, "done")  # half-open: our app answers
        reader.join(TIMEOUT)
        assert not reader.is_alive(), "the connection did not end"
        settle(server)

    closes = [f for f in far.frames if f.opcode == CLOSE]
    assert len(closes) == 1 and far.frames[-1].opcode == CLOSE, far.frames
    check_messages([f.payload.decode() for f in far.frames if f.opcode == TEXT], sent)
    check_events(rec, "server")
    assert rec.of("server", "close")[0].event.was_clean
    assert [s.event.data for s in rec.of("server", "message")] == far.sent


def test_SPEC_2_two_threads_close_while_the_peers_close_arrives_in_memory():
    for round in range(50):
        rec = Recorder()
        client, server = make_pair()
        rec.watch(client, "client")
        rec.watch(server, "server")
        server.accept()
        client.accept()
        counting = server._machine.link = CountingLink(server._machine.link)
        run_threads([lambda: server.close(4000, "a"), lambda: server.close(4001, "b"),
                     lambda: client.close(1000, "peer")])
        rec.wait_for(lambda seen: len([s for s in seen if s.type == "close"]) == 2)
        settle(client, server)
        assert counting.closes == 1
        assert len(rec.of("server", "close")) == 1
        assert len(rec.of("client", "close")) == 1
        assert (client.ready_state, server.ready_state) == (3, 3)
