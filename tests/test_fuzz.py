"""Whatever the network sends, on every server of the matrix.

Each connection sends a seeded random stream after a valid handshake: frames of any
opcode, with RSV bits, unmasked, fragmented or not, close payloads with any code and
invalid UTF-8, messages over the size limit, lying lengths, bit flips and plain
garbage, written in random pieces, with permessage-deflate offered or not.  Then the
client may send a Close, and sends its FIN.  Whatever came before:

* the server ends the connection (EOF or a reset) soon after the client's FIN;
* the server's end gets one last event and nothing after it: ``close`` (H1), or
  ``error`` for a protocol error or an oversized message (M5, E4);
* the server writes no traceback, and afterwards holds no descriptor more than before;
* it still echoes a well-formed client.

A failing connection is named by its seed: ``stream(random.Random(seed))`` rebuilds it.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import struct
import time
import urllib.request

import pytest

from tests.rawclient import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawClient, make_frame
from tests.servers import SERVER_KINDS, process_stats, running_server

CONNECTIONS = 250  # per server kind
IN_FLIGHT = 8
END_WITHIN = 5.0  # seconds from the client's FIN to the server's end of the connection
SETTLE_WITHIN = 15.0  # seconds for a threaded server's last handlers to close their sockets
PATHS = ("/ws/echo", "/small/ws/echo", "/legacy/ws/echo", "/nocomp/ws/echo")
CLOSE_CODES = (1000, 1001, 999, 1004, 1005, 1006, 1015, 1016, 2999, 3000, 4999, 5000, 65535)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("logs") / ("fuzz-%s.log" % request.param)
    with running_server(request.param, "tests.apps:matrix", log_path=log_path) as running:
        yield running


def payload(rnd: random.Random) -> bytes:
    kind = rnd.random()
    if kind < 0.3:
        return rnd.randbytes(rnd.randint(0, 200))
    if kind < 0.6:
        return "héllo €😀".encode("utf-8")[:rnd.randint(0, 14)] * rnd.randint(1, 20)
    if kind < 0.8:
        return struct.pack("!H", rnd.choice(CLOSE_CODES)) + rnd.randbytes(rnd.randint(0, 130))
    return b"\xff\xfe\xed" * rnd.randint(0, 3)


def stream(rnd: random.Random) -> bytes:
    """What one connection sends after its handshake."""
    parts = []
    for _ in range(rnd.randint(0, 8)):
        kind = rnd.random()
        if kind < 0.3:
            parts.append(make_frame(
                rnd.choice((TEXT, BINARY, CONT, CLOSE, PING, PONG, 0x3, 0xB)), payload(rnd),
                fin=rnd.random() < 0.8, mask=rnd.random() < 0.95,
                rsv=rnd.choice((0, 0, 0, 4, 2, 1))))
        elif kind < 0.35:
            declared = rnd.choice((0, 5, 125, 126, 65535, 1 << 16, 1 << 40))
            parts.append(make_frame(TEXT, rnd.randbytes(rnd.randint(0, 40)), length=declared))
        elif kind < 0.4:
            parts.append(rnd.randbytes(rnd.randint(1, 40)))
        elif kind < 0.5:
            parts.append(make_frame(rnd.choice((TEXT, BINARY)), b"x" * rnd.choice(
                (1024, 1025, 70000))))
        elif kind < 0.6:
            parts.append(make_frame(PING, rnd.randbytes(rnd.randint(0, 125))))
        else:
            parts.append(make_frame(rnd.choice((TEXT, BINARY)), "fine ✓".encode("utf-8")))
    data = bytearray(b"".join(parts))
    if data and rnd.random() < 0.2:
        for _ in range(rnd.randint(1, 5)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    return bytes(data)


def one_connection(port: int, seed: str) -> str:
    """Run connection ``seed``; returns its log id.  Raises on a server that outlives
    the client's FIN."""
    rnd = random.Random(seed)
    path = rnd.choice(PATHS) + "?id=" + seed
    if rnd.random() < 0.2:
        path += "&half=1"
    if rnd.random() < 0.3:
        path += "&bt=blob"
    headers = {"Sec-WebSocket-Extensions": "permessage-deflate"} if rnd.random() < 0.5 \
        else None
    client = RawClient.open(port, path, headers, timeout=END_WITHIN)
    data = stream(rnd)
    try:
        position = 0
        while position < len(data):
            size = rnd.randint(1, 300)
            client.send_raw(data[position:position + size])
            position += size
            if rnd.random() < 0.05:
                time.sleep(0.001)  # so that the server reads a frame in pieces
    except OSError:
        pass  # the server already ended the connection: fine
    try:
        if rnd.random() < 0.4:
            client.close(1000)
        client.sock.shutdown(1)  # our FIN
    except OSError:
        pass
    try:
        started = time.monotonic()
        client.read_until_eof(END_WITHIN)  # raises Timeout if the server outlives the FIN
        assert time.monotonic() - started < END_WITHIN
    finally:
        client.sock.close()
    return seed


def log_of(server, id: str) -> list:
    with urllib.request.urlopen(server.http_url("/__log?id=" + id), timeout=5) as response:
        return json.loads(response.read())


def test_whatever_the_network_sends(server):
    port = server.port
    before = process_stats(server)
    seeds = ["fz-%s-%d" % (server.kind, i) for i in range(CONNECTIONS)]
    failures = []
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = {pool.submit(one_connection, port, seed): seed for seed in seeds}
        for future in concurrent.futures.as_completed(futures, timeout=120):
            try:
                future.result()
            except Exception as exc:  # collect every failure, then report them all
                failures.append("%s: %r" % (futures[future], exc))
    assert not failures, "\n".join(failures)

    for seed in seeds:  # one last event per end: close (H1), or error (M5, E4)
        deadline = time.monotonic() + END_WITHIN
        while True:
            kinds = [entry["ev"] for entry in log_of(server, seed) if "ev" in entry]
            ends = [kind for kind in kinds if kind in ("close", "error")]
            if ends or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(ends) == 1 and kinds[-1] == ends[0], (seed, kinds)

    deadline = time.monotonic() + SETTLE_WITHIN  # every connection's descriptor is closed
    while process_stats(server)["fds"] > before["fds"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_stats(server)["fds"] <= before["fds"], (before, process_stats(server))

    with RawClient.open(port, "/ws/echo?id=fz-after") as client:
        client.text("still here")
        assert client.recv().text == "still here"
        client.close(1000)
        assert client.recv().close_code == 1000
        client.expect_eof()

    text = server.log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
