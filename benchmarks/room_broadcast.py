"""Broadcast latency of a ``Room``: in one process, and across two through Redis.

Runs the test room app (``tests/room_apps.py``) on gevent servers, connects N clients
with the ``websockets`` asyncio client, then asks one client to broadcast a message, R
times, waiting each time until every client has it.  The delay from the request to each
client's receipt is one sample; the table gives p50 and p95 per setting::

    python benchmarks/room_broadcast.py [--clients 500] [--rounds 20]

The Redis setting needs ``redis-server`` (``$REDIS_SERVER`` or on ``PATH``) and the
``redis`` package; without them it is skipped.  Numbers depend on the machine: compare
settings with each other, not with another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from tests.redis_server import RedisServer  # noqa: E402
from tests.servers import running_server  # noqa: E402

APP = "tests.room_apps:app"


async def open_clients(urls: list[str], count: int) -> list[Any]:
    """``count`` clients spread over ``urls`` in turn, each past its greeting."""
    limit = asyncio.Semaphore(50)

    async def one(i: int) -> Any:
        async with limit:
            ws = await connect("%s/room?id=c%d" % (urls[i % len(urls)], i),
                               max_queue=None, open_timeout=30)
            await asyncio.wait_for(ws.recv(), 10)  # {"hello": ...}
            return ws

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def wait_for(ws: Any, token: str) -> float:
    """The moment ``ws`` receives ``token`` (notices and other data are skipped)."""
    while True:
        data = await asyncio.wait_for(ws.recv(), 30)
        if data == token:
            return time.perf_counter()


async def measure(urls: list[str], clients: int, rounds: int) -> list[list[float]]:
    """Latency samples (seconds) per server: list ``i`` holds the clients of ``urls[i]``."""
    sockets = await open_clients(urls, clients)
    for url in urls:  # with a backplane, wait until every server is subscribed
        await asyncio.get_running_loop().run_in_executor(None, wait_subscribed, url)
    samples: list[list[float]] = [[] for _ in urls]
    try:
        sender = sockets[0]
        for r in range(rounds):
            token = "round-%d" % r
            receipts = [asyncio.ensure_future(wait_for(ws, token)) for ws in sockets]
            started = time.perf_counter()
            await sender.send(json.dumps({"op": "broadcast", "data": token}))
            for i, at in enumerate(await asyncio.gather(*receipts)):
                samples[i % len(urls)].append(at - started)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return samples


def wait_subscribed(ws_url: str, timeout: float = 30.0) -> None:
    status_url = "http" + ws_url[2:] + "/status"
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(status_url, timeout=10) as response:
            if json.loads(response.read())["connected"] is not False:
                return
        if time.monotonic() > deadline:
            raise TimeoutError("the server at %s never subscribed" % ws_url)
        time.sleep(0.05)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def row(name: str, values: list[float]) -> str:
    return "%-34s %8d %10.2f %10.2f" % (name, len(values), 1000 * statistics.median(values),
                                         1000 * percentile(values, 0.95))


@contextlib.contextmanager
def redis_or_none() -> Iterator[Optional[RedisServer]]:
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        binary = None
    if not binary:
        yield None
        return
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows = []
    env = {"ROOM_NAME": "bench"}
    with running_server("gevent", APP, env=env) as server:
        samples = asyncio.run(measure([server.ws_url("")], args.clients, args.rounds))
        rows.append(row("in-process room (1 server)", samples[0]))
    with redis_or_none() as redis_server:
        if redis_server is None:
            rows.append("%-34s skipped: no redis-server or redis package" % "Redis backplane")
        else:
            env = {"ROOM_NAME": "bench", "ROOM_REDIS_URL": redis_server.url}
            with running_server("gevent", APP, env=env) as a, \
                    running_server("gevent", APP, env=env) as b:
                samples = asyncio.run(measure([a.ws_url(""), b.ws_url("")], args.clients,
                                              args.rounds))
                rows.append(row("Redis: sender's server", samples[0]))
                rows.append(row("Redis: the other server", samples[1]))
    print("broadcast to %d clients, %d rounds (latency in ms)" % (args.clients, args.rounds))
    print("%-34s %8s %10s %10s" % ("setting", "samples", "p50", "p95"))
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
