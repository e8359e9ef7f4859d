"""A small asyncio WebSocket load client speaking raw frames (no library in the loop).

Frames are masked with the all-zero key: valid framing (RFC 6455 §5.3 wants random keys
from browsers; a load generator only needs the server to unmask), and no client-side
masking cost that would steal CPU from the server on a small machine.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time

ZERO_MASK = b"\x00\x00\x00\x00"


class Conn:
    """One client connection: ``send(opcode, payload)`` and ``recv() -> (opcode, payload)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, path: str = "/echo") -> "Conn":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((
            "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, port, key)).encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError("handshake refused: %r" % head[:40])
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        self.writer.write(header + ZERO_MASK + payload)

    async def recv(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(n)

    async def close(self) -> None:
        """Close handshake as a browser does: Close, wait for the reply, FIN, wait for EOF."""
        self.send(8, struct.pack("!H", 1000))
        while (await self.recv())[0] != 8:
            pass
        self.writer.write_eof()
        await self.reader.read()
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


async def echo_small(port: int, conns: int, warmup: float, seconds: float) -> dict:
    """Round trips of 64-byte text messages, one in flight per connection."""
    clients = [await Conn.open(port) for _ in range(conns)]
    payload = b"x" * 64
    counts = [0] * conns
    state = {"measuring": False, "stop": False}

    async def loop(i: int, c: Conn) -> None:
        while not state["stop"]:
            c.send(1, payload)
            opcode, data = await c.recv()
            if opcode != 1 or len(data) != 64:
                raise AssertionError("bad echo")
            if state["measuring"]:
                counts[i] += 1

    tasks = [asyncio.ensure_future(loop(i, c)) for i, c in enumerate(clients)]
    await asyncio.sleep(warmup)
    state["measuring"] = True
    await asyncio.sleep(seconds)
    state["measuring"] = False
    state["stop"] = True
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for c in clients:
        c.abort()
    return {"msgs_per_s": sum(counts) / seconds}


async def echo_large(port: int, seconds: float, size: int = 1 << 20) -> dict:
    """1 MiB binary messages echoed back to back on one connection."""
    c = await Conn.open(port)
    payload = os.urandom(size)
    c.send(2, payload)
    await c.recv()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        c.send(2, payload)
        opcode, data = await c.recv()
        if opcode != 2 or len(data) != size:
            raise AssertionError("bad echo")
        done += 1
    elapsed = time.perf_counter() - start
    c.abort()
    return {"MB_per_s": done * size / elapsed / 1e6}


async def connect_rate(port: int, parallel: int, seconds: float) -> dict:
    """Connect, upgrade, one 64-byte echo, close handshake, EOF: connections per second."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            c = await Conn.open(port)
            c.send(1, b"y" * 64)
            await c.recv()
            await c.close()
            count += 1

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*[loop() for _ in range(parallel)]), seconds + 20)
    return {"conns_per_s": count / (time.perf_counter() - start)}


def rss_kib(pid: int) -> int:
    total = 0
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            total = int(line.split()[1])
    return total


async def idle_conns(port: int, pid: int, count: int) -> dict:
    """Memory per idle connection, then one echo on each to prove it is alive."""
    await asyncio.sleep(0.3)
    before = rss_kib(pid)
    gate = asyncio.Semaphore(64)

    async def one() -> Conn:
        async with gate:
            return await Conn.open(port)

    clients = await asyncio.gather(*[one() for _ in range(count)])
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    alive = 0
    for i in range(0, count, 64):
        batch = clients[i:i + 64]
        for c in batch:
            c.send(1, b"z")
        for c in batch:
            if await asyncio.wait_for(c.recv(), 10) == (1, b"z"):
                alive += 1
    for c in clients:
        c.abort()
    return {"KiB_per_conn": (after - before) / count, "alive": alive}


async def broadcast(port: int, clients_n: int, rounds: int) -> dict:
    """One message to ``clients_n`` clients: time until every one received it."""
    gate = asyncio.Semaphore(64)

    async def one() -> Conn:
        async with gate:
            return await Conn.open(port, "/broadcast")

    clients = await asyncio.gather(*[one() for _ in range(clients_n)])
    round_ = {"tag": b"", "left": 0}
    done = asyncio.Event()
    heard: set[int] = set()

    async def listen(index: int, conn: Conn) -> None:
        while True:
            payload = (await conn.recv())[1]
            heard.add(index)
            if payload == round_["tag"]:
                round_["left"] -= 1
                if not round_["left"]:
                    done.set()

    listeners = [asyncio.create_task(listen(i, c)) for i, c in enumerate(clients)]
    try:
        # A server may put a socket in its room only after the handshake (flask-sock
        # does): broadcast until every client has heard something, then measure.
        for join in range(600):
            if len(heard) == clients_n:
                break
            clients[0].send(1, b"join-%06d" % join)
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("%d of %d clients never heard a broadcast" % (
                clients_n - len(heard), clients_n))
        times = []
        for r in range(rounds + 3):
            round_["tag"], round_["left"] = b"round-%06d" % r, clients_n
            done.clear()
            start = time.perf_counter()
            clients[0].send(1, round_["tag"])
            await asyncio.wait_for(done.wait(), 30)
            if r >= 3:
                times.append(time.perf_counter() - start)
    finally:
        for task in listeners:
            task.cancel()
        for c in clients:
            c.abort()
    times.sort()
    return {"p50_ms": times[len(times) // 2] * 1000}
