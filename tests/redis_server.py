"""A real ``redis-server`` for tests, on a free 127.0.0.1 port, with no persistence.

``redis_binary()`` finds the server (``$REDIS_SERVER`` or ``redis-server`` on ``PATH``);
when it is missing the test is skipped, unless ``CI`` is set, where it fails.
``RedisServer`` can be killed and started again on the same port, to test outages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator, Optional

import pytest

from tests.servers import free_port

TIMEOUT = 10.0


def redis_binary() -> str:
    """The ``redis-server`` executable; skips the test (fails it under CI) without one."""
    path = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if path and os.access(path, os.X_OK):
        return path
    message = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


class RedisServer:
    """One ``redis-server`` process; :meth:`kill` and :meth:`start` keep the port."""

    def __init__(self, binary: str, port: Optional[int] = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        self._dir = tempfile.TemporaryDirectory(prefix="cfws-redis-")

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self._dir.name,
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start on port %d" % self.port)
            time.sleep(0.05)

    def ping(self) -> bool:
        """Whether a server answers ``PING`` on the port now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        self.kill()
        self._dir.cleanup()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started :class:`RedisServer`, killed and cleaned up afterwards."""
    server = RedisServer(redis_binary())
    try:
        server.start()
        yield server
    finally:
        server.close()
