"""CPU per WebSocket connection, in one process: cfws_sync beside the pywsgi floor.

``python benchmarks/connect_cpu.py [--parallel 16] [--connections 400] [--repeats 25]``

The connection rate over TCP moves by a quarter between runs on a shared machine; the
CPU a connection costs, measured without the network, moves far less.  Each connection
is a socketpair under gevent: the server side is handed to the WSGI app as gevent's
pywsgi hands it an upgrade request, and a client greenlet does what the load generator
of the connection-rate benchmark does (the handshake, one 64-byte echo, the close
handshake, then waits for the server's FIN).  ``--parallel`` connections run at once.
The targets take short turns, so that both see the machine as it is at that moment, and
the table gives, besides each target's best and median, the median of the differences
and ratios between turns run back to back (the machine's speed moves both targets'
figures alike, so the ratio is the steadiest).

Targets: ``cfws_sync`` (the echo app of ``servers/cfws_sync_server.py``) and
``pywsgi-floor`` (``servers/pywsgi_floor.py``, the least WebSocket code a client
accepts).  The difference is what the library adds per connection; pywsgi's own HTTP
parsing is outside the measurement, for both.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
import cfws_sync_server  # noqa: E402
import pywsgi_floor  # noqa: E402

TARGETS = {"cfws_sync": cfws_sync_server.app, "pywsgi-floor": pywsgi_floor.quiet}
KEY = base64.b64encode(os.urandom(16)).decode()


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


MESSAGE = masked(1, b"x" * 64)
CLOSE = masked(8, struct.pack("!H", 1000))
ECHO = b"\x81\x40" + b"x" * 64  # a server's frames are not masked
CLOSE_ECHO = b"\x88\x02" + struct.pack("!H", 1000)


def upgrade_environ(sock: socket.socket) -> dict:
    """The environ gevent's pywsgi builds for an upgrade request on ``sock``."""
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/echo", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "CONTENT_LENGTH": "",
        "CONTENT_TYPE": "", "HTTP_HOST": "127.0.0.1:8080", "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_KEY": KEY,
        "HTTP_SEC_WEBSOCKET_VERSION": "13", "wsgi.url_scheme": "http",
        "wsgi.input": sock.makefile("rb"), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def client(sock: socket.socket) -> None:
    """The load generator's connection: 101, one echo, Close, then read to EOF.  It
    closes its socket in any case, so a server never waits for a client that failed."""
    with sock:
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise AssertionError("closed before a response: %r" % head[:40])
            head += data
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError("no 101: %r" % head[:40])
        sock.sendall(MESSAGE)
        if receive(sock, len(ECHO)) != ECHO:
            raise AssertionError("the echo is not the message")
        sock.sendall(CLOSE)
        if receive(sock, len(CLOSE_ECHO)) != CLOSE_ECHO:
            raise AssertionError("the Close was not answered with 1000")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def start_response(status, headers, exc_info=None):
    pass


def one_connection(app) -> None:
    server_side, client_side = socket.socketpair()
    peer = gevent.spawn(client, client_side)
    try:
        for _ in app(upgrade_environ(server_side), start_response):
            pass
    except BrokenPipeError:
        pass  # what both apps raise for the server once the connection is served
    finally:
        server_side.close()
    peer.get(timeout=10)


def cpu_per_connection(app, parallel: int, count: int) -> float:
    """Microseconds of this process's CPU per connection, ``parallel`` at a time."""
    each = max(1, count // parallel)

    def worker():
        for _ in range(each):
            one_connection(app)

    start = time.process_time()
    gevent.joinall([gevent.spawn(worker) for _ in range(parallel)], raise_error=True)
    return (time.process_time() - start) / (each * parallel) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--connections", type=int, default=400, help="per turn")
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    results = {name: [] for name in TARGETS}
    for app in TARGETS.values():
        cpu_per_connection(app, args.parallel, 2 * args.parallel)  # warm up
    for turn in range(args.repeats):  # interleaved, so both see the same machine
        for name, app in sorted(TARGETS.items(), reverse=bool(turn % 2)):
            results[name].append(cpu_per_connection(app, args.parallel, args.connections))
    print("CPU µs per connection, %d at once, %d repeats of %d connections"
          % (args.parallel, args.repeats, args.connections))
    print("%-14s %8s %8s" % ("target", "best", "median"))
    for name, values in results.items():
        print("%-14s %8.1f %8.1f" % (name, min(values), statistics.median(values)))
    pairs = list(zip(results["cfws_sync"], results["pywsgi-floor"]))
    print("cfws_sync adds %.1f µs per connection to the floor, and costs %.2f× as much "
          "(medians over turns run back to back)"
          % (statistics.median(ours - floor for ours, floor in pairs),
             statistics.median(ours / floor for ours, floor in pairs)))


if __name__ == "__main__":
    main()
