"""``RedisBackplane`` with a real ``redis-server``: rooms of one name across processes.

Two backplanes in this process stand for two processes where that is enough (each has
its own connections and origin id); real server processes (two gevent servers, gunicorn
with two workers) check the rest, with ``websockets`` clients.  Redis is killed and
restarted on the same port to check that local broadcasts carry on and remote ones
resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from cfws_sync import Room
from tests.redis_server import RedisServer, redis_binary, running_redis
from tests.servers import ROOT, free_port, running_server, server_command, wait_for_port
from tests.test_room import TIMEOUT, joined, open_client

if os.environ.get("CI"):
    import redis  # noqa: F401  - CI must have it: a missing package fails here
else:
    pytest.importorskip("redis")

from cfws_sync import RedisBackplane  # noqa: E402

FAST = dict(reconnect_delay=0.05, max_reconnect_delay=0.5)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@contextlib.contextmanager
def backplanes(url: str, count: int = 2) -> Iterator[list[RedisBackplane]]:
    planes = [RedisBackplane(url, **FAST) for _ in range(count)]
    try:
        yield planes
    finally:
        for plane in planes:
            plane.close()


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting until " + what
        time.sleep(0.02)


# -- two backplanes in this process ---------------------------------------------------------


def test_broadcast_reaches_every_room_of_the_name_once(redis_server):
    with backplanes(redis_server.url) as (one, two):
        here, sibling, there = Room("x", one), Room("x", one), Room("x", two)
        other = Room("y", two)
        ends = [joined(room) for room in (here, sibling, there, other)]
        wait_until(lambda: one.connected and two.connected, "subscribed")
        assert here.broadcast("hello") == 1  # its own sockets; the rest via the backplane
        for client, server, events in ends[:3]:
            assert events.message() == "hello"
        assert all(events.empty_for(0.3) for _, _, events in ends)  # once each; "y" none
        there.broadcast(b"\x00back")
        assert [e.message() for _, _, e in ends[:3]] == [b"\x00back"] * 3


def test_tags_filter_across_processes(redis_server):
    with backplanes(redis_server.url) as (one, two):
        here, there = Room("tags", one), Room("tags", two)
        red_here, blue_here = joined(here, ["red"]), joined(here, ["blue"])
        red_there, blue_there = joined(there, ["red"]), joined(there, ["blue"])
        wait_until(lambda: one.connected and two.connected, "subscribed")
        here.broadcast("only red", tag="red")
        assert red_here[2].message() == "only red" and red_there[2].message() == "only red"
        assert blue_here[2].empty_for(0.2) and blue_there[2].empty_for(0.1)


def test_order_is_kept_per_publisher(redis_server):
    with backplanes(redis_server.url) as (one, two):
        here, there = Room("order", one), Room("order", two)
        joined(here)
        client, server, events = joined(there)
        wait_until(lambda: one.connected and two.connected, "subscribed")
        for i in range(300):
            here.broadcast("m%d" % i)
        assert [events.message() for _ in range(300)] == ["m%d" % i for i in range(300)]


def test_redis_down_at_start_then_up():
    redis_server = RedisServer(redis_binary())  # not started yet
    try:
        with backplanes(redis_server.url) as (one, two):
            here, there = Room("late", one), Room("late", two)
            mine, theirs = joined(here), joined(there)
            assert here.broadcast("local only") == 1  # returns at once, no Redis needed
            assert mine[2].message() == "local only"
            assert not one.connected
            redis_server.start()
            wait_until(lambda: one.connected and two.connected, "connected")
            here.broadcast("through redis")
            assert theirs[2].message() == "through redis"
            assert one.dropped >= 1
    finally:
        redis_server.close()


def test_redis_restart_local_keeps_working_remote_resumes(redis_server, caplog):
    caplog.set_level(logging.INFO, logger="cfws_sync.room")
    with backplanes(redis_server.url) as (one, two):
        here, there = Room("restart", one), Room("restart", two)
        mine, theirs = joined(here), joined(there)
        wait_until(lambda: one.connected and two.connected, "subscribed")
        redis_server.kill()
        wait_until(lambda: not one.connected and not two.connected, "the loss is seen")
        for i in range(50):  # none waits on Redis; every one is delivered here
            assert here.broadcast("while down %d" % i) == 1
        assert [mine[2].message() for _ in range(50)] == ["while down %d" % i for i in range(50)]
        assert theirs[2].empty_for(0.3)  # at most once: nothing is replayed later
        redis_server.start()
        wait_until(lambda: one.connected and two.connected, "reconnected")
        here.broadcast("resumed")
        assert mine[2].message() == "resumed" and theirs[2].message() == "resumed"
        assert theirs[2].empty_for(0.3)
    assert "connection lost" in caplog.text and "subscribed again" in caplog.text


def test_close_stops_the_workers(redis_server):
    plane = RedisBackplane(redis_server.url, **FAST)
    room = Room("closing", plane)
    joined(room)
    wait_until(lambda: plane.connected, "subscribed")
    workers = list(plane._workers)
    plane.close()
    assert all(not _alive(worker) for worker in workers)
    with pytest.raises(RuntimeError):
        plane.attach(Room("after"))
    assert room.broadcast("local still") == 1  # a closed backplane only drops


def test_options_are_checked():
    with pytest.raises(ValueError):
        RedisBackplane("redis://127.0.0.1:1/0", max_pending=0)
    with pytest.raises(ValueError):
        RedisBackplane("redis://127.0.0.1:1/0", reconnect_delay=-1)


def _alive(worker: Any) -> bool:
    if hasattr(worker, "is_alive"):
        return bool(worker.is_alive())
    return not worker.dead


# -- real server processes ------------------------------------------------------------------


def status(server_port: int) -> dict:
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % server_port,
                                timeout=TIMEOUT) as response:
        return json.loads(response.read())


def next_data(ws) -> Any:
    """The next broadcast, skipping JSON notices."""
    while True:
        data = ws.recv(timeout=TIMEOUT)
        if not (isinstance(data, str) and data.startswith("{")):
            return data


def send_broadcast(ws, data: str, **options) -> None:
    ws.send(json.dumps(dict(op="broadcast", data=data, **options)))


def test_two_gevent_servers_share_the_room_through_a_restart(redis_server):
    env = {"ROOM_REDIS_URL": redis_server.url, "ROOM_NAME": "two-servers"}
    with running_server("gevent", "tests.room_apps:app", env=env) as a, \
            running_server("gevent", "tests.room_apps:app", env=env) as b:
        on_a = [open_client(a, "a0", "red"), open_client(a, "a1", "blue")]
        on_b = [open_client(b, "b0", "red"), open_client(b, "b1", "blue")]
        everyone = on_a + on_b
        try:
            wait_until(lambda: status(a.port)["connected"] and status(b.port)["connected"],
                       "both servers subscribed")
            send_broadcast(on_a[0], "from a")
            assert [next_data(ws) for ws in everyone] == ["from a"] * 4
            send_broadcast(on_b[1], "red only", tag="red")
            assert next_data(on_a[0]) == "red only" and next_data(on_b[0]) == "red only"
            send_broadcast(on_b[1], "after red")  # blue sockets saw no "red only"
            assert [next_data(ws) for ws in everyone] == [
                "after red", "after red", "after red", "after red"]

            redis_server.kill()
            wait_until(lambda: not status(a.port)["connected"], "server a sees the loss")
            send_broadcast(on_a[1], "local while down")
            assert [next_data(ws) for ws in on_a] == ["local while down"] * 2

            redis_server.start()
            wait_until(lambda: status(a.port)["connected"] and status(b.port)["connected"],
                       "both servers subscribed again")
            send_broadcast(on_b[0], "resumed")
            assert [next_data(ws) for ws in everyone] == ["resumed"] * 4
        finally:
            for ws in everyone:
                ws.close()


@contextlib.contextmanager
def gunicorn_workers(app: str, workers: int, env: dict) -> Iterator[int]:
    """gunicorn (gevent worker class) with ``workers`` worker processes; yields the port."""
    port = free_port()
    command = server_command("gunicorn-gevent", app, port)
    command[command.index("-w") + 1] = str(workers)
    proc = subprocess.Popen(command, cwd=str(ROOT), env=dict(
        os.environ, PYTHONPATH=str(Path(ROOT)), PYTHONUNBUFFERED="1", **env),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class _Port:
    def __init__(self, port: int) -> None:
        self.port = port

    def ws_url(self, path: str) -> str:
        return "ws://127.0.0.1:%d%s" % (self.port, path)


def test_gunicorn_with_two_workers(redis_server):
    env = {"ROOM_REDIS_URL": redis_server.url, "ROOM_NAME": "gunicorn"}
    with gunicorn_workers("tests.room_apps:app", 2, env) as port:
        server = _Port(port)
        clients: list[Any] = []
        pids: dict[int, list] = {}
        try:
            while len(pids) < 2:  # the kernel spreads connections over the workers
                # ...unevenly: the worker that accepted last often wins the next one too
                assert len(clients) < 400, "every connection went to one worker"
                if clients:
                    time.sleep(0.005 * (len(clients) % 4))
                ws = open_client(server, "c%d" % len(clients))
                clients.append(ws)
                pids.setdefault(_pid_of(ws), []).append(ws)

            def both_connected() -> bool:
                seen = {}
                for _ in range(20):
                    answer = status(port)
                    seen[answer["pid"]] = answer["connected"]
                return len(seen) == 2 and all(seen.values())

            wait_until(both_connected, "both workers subscribed", timeout=20)
            send_broadcast(clients[0], "to every worker")
            assert [next_data(ws) for ws in clients] == ["to every worker"] * len(clients)
        finally:
            for ws in clients:
                ws.close()


def _pid_of(ws) -> int:
    ws.send(json.dumps({"op": "attachment"}))
    while True:
        answer = json.loads(ws.recv(timeout=TIMEOUT))
        if "attachment" in answer:
            return int(answer["attachment"]["pid"])
