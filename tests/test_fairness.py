"""Under gevent, a connection whose reads always find data must still let the others run.

A fast client keeps its connection's socket full, so the reader's ``recv`` never waits
and never gives the event loop a turn; the reader must yield by itself, or every other
connection of the process stalls until that client pauses.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.rawclient import TEXT, RawClient, make_frame
from tests.servers import running_server


def test_a_client_that_never_pauses_does_not_starve_the_others():
    with running_server("gevent", "tests.apps:echo") as server:
        with RawClient.open(server.port, "/ws") as flooder, \
                RawClient.open(server.port, "/ws") as other:
            stop = threading.Event()
            batch = make_frame(TEXT, b"x" * 64) * 4000  # 280 KB of small messages a write

            def flood() -> None:
                try:
                    while not stop.is_set():
                        flooder.sock.sendall(batch)
                except OSError:
                    pass

            def drain() -> None:  # the echoes: read and dropped
                try:
                    while flooder.sock.recv(1 << 20):
                        pass
                except OSError:
                    pass

            tasks = [threading.Thread(target=flood), threading.Thread(target=drain)]
            for task in tasks:
                task.start()
            try:
                time.sleep(0.3)  # the flood is under way: the server reads it non-stop
                for n in range(5):
                    started = time.monotonic()
                    other.text("turn %d" % n)
                    assert other.recv(timeout=2.0).text == "turn %d" % n
                    assert time.monotonic() - started < 1.0
                    assert not stop.is_set() and tasks[0].is_alive()  # still flooding
            finally:
                stop.set()
                flooder.sock.shutdown(socket.SHUT_RDWR)
                for task in tasks:
                    task.join(5)
