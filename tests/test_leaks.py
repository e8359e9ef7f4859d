"""Nothing grows with the number of connections served (SPEC §7).

Each server of the matrix serves 500 WebSocket connections, opened and ended every way a
connection can end: clean closes from either side, FIN and RST drops (between frames and
in the middle of one), protocol errors, an oversized message.  Then the server process's
open file descriptors and threads (read from ``/proc/PID``; a server's own worker pool
is counted apart), and its live greenlets (counted by the app with ``gc``), must be back
where they were after a warm-up of the same mix.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.rawclient import BINARY, CLOSE, RawClient, make_frame
from tests.servers import SERVER_KINDS, process_stats, running_server

CONNECTIONS = 500
CONCURRENCY = 16


def end_clean(c: RawClient) -> None:
    c.text("hi")
    assert c.recv().text == "hi"
    c.close(1000, "bye")
    assert c.recv().opcode == CLOSE
    c.expect_eof()


def end_fin(c: RawClient) -> None:
    c.text("hi")
    c.recv()
    c.half_close()
    c.expect_eof()


def end_rst(c: RawClient) -> None:
    c.text("hi")
    c.recv()
    c.reset()


def end_mid_frame_rst(c: RawClient) -> None:
    c.send_raw(make_frame(BINARY, bytes(1000))[:500])
    c.reset()


def end_mid_frame_fin(c: RawClient) -> None:
    c.send_raw(make_frame(BINARY, bytes(1000))[:500])
    c.half_close()
    c.expect_eof()


def end_protocol_error(c: RawClient) -> None:
    c.send_raw(make_frame(3, b"x"))
    assert c.recv().close_code == 1002
    c.expect_eof()


def end_too_large(c: RawClient) -> None:
    c.send_raw(make_frame(BINARY, b"", length=2048))  # over /small's 1 KiB limit
    assert c.recv().close_code == 1009
    c.expect_eof()


def end_app_closes(c: RawClient) -> None:
    assert c.recv().opcode == CLOSE
    c.close(1000)
    c.expect_eof()


MIX = [
    ("/ws/echo", end_clean), ("/ws/echo", end_fin), ("/ws/echo", end_rst),
    ("/ws/echo", end_mid_frame_rst), ("/ws/echo", end_mid_frame_fin),
    ("/ws/echo", end_protocol_error), ("/small/ws/echo", end_too_large),
    ("/ws/wsclose?close=1000", end_app_closes),
]


def one_connection(port: int, i: int) -> None:
    path, end = MIX[i % len(MIX)]
    c = RawClient.open(port, path)
    try:
        end(c)
    finally:
        c.abort()


def serve(port: int, count: int) -> None:
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for result in pool.map(lambda i: one_connection(port, i), range(count)):
            assert result is None


def steady(server, timeout: float = 5.0) -> dict:
    """Stats once two readings in a row agree (threads and greenlets winding down)."""
    deadline = time.monotonic() + timeout
    last = process_stats(server)
    while True:
        time.sleep(0.1)
        now = process_stats(server)
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def settle(server, baseline: dict, slack: int, timeout: float = 10.0) -> dict:
    """Stats once each count is within ``slack`` of ``baseline`` (or the last read)."""
    deadline = time.monotonic() + timeout
    while True:
        now = process_stats(server)
        back = all(now[k] <= baseline[k] + slack for k in ("fds", "threads", "greenlets"))
        if back or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_no_fd_thread_or_greenlet_left_behind(kind):
    with running_server(kind, "tests.apps:matrix") as server:
        serve(server.port, 2 * len(MIX) * CONCURRENCY)  # warm-up: pools at their size
        baseline = steady(server)
        serve(server.port, CONNECTIONS)
        after = settle(server, baseline, 3)
        assert after["fds"] <= baseline["fds"] + 3, (baseline, after)
        assert after["threads"] <= baseline["threads"] + 3, (baseline, after)
        assert after["greenlets"] <= baseline["greenlets"] + 3, (baseline, after)
        assert after["pool"] <= 64  # gunicorn --threads 64 (tests/servers.py)
