"""Start real WSGI servers for tests, each in its own process, on a free 127.0.0.1 port.

``SERVER_KINDS`` is the matrix: gevent pywsgi (monkey-patched), gunicorn with the gevent
and gthread workers, and Werkzeug's threaded development server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
SERVER_KINDS = ("gevent", "gunicorn-gevent", "gunicorn-gthread", "werkzeug")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: Optional[subprocess.Popen] = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("server on port %d did not start in %ss" % (port, timeout))


def server_command(kind: str, app: str, port: int) -> list[str]:
    if kind == "gunicorn-gevent":
        return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1",
                "--worker-connections", "2000", "-b", "127.0.0.1:%d" % port,
                "--graceful-timeout", "1", "--timeout", "0", app]
    if kind == "gunicorn-gthread":
        return [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1",
                "--threads", "64", "-b", "127.0.0.1:%d" % port,
                "--graceful-timeout", "1", "--timeout", "0", app]
    return [sys.executable, "-m", "tests.serve", kind, app, str(port)]


@contextlib.contextmanager
def running_server(kind: str, app: str, env: Optional[dict[str, str]] = None,
                   log_path: Optional[Path] = None) -> Iterator["Server"]:
    """Run ``app`` (``module:attr``) on server ``kind``; yield a :class:`Server`."""
    port = free_port()
    environment = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(server_command(kind, app, port), cwd=str(ROOT), env=environment,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc)
        yield Server(kind, port, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if log_path:
            log.close()  # type: ignore[union-attr]


class Server:
    """A running server: ``ws_url(path)``, ``http_url(path)``, and its process."""

    def __init__(self, kind: str, port: int, proc: subprocess.Popen) -> None:
        self.kind = kind
        self.port = port
        self.proc = proc

    def ws_url(self, path: str = "/") -> str:
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def http_url(self, path: str = "/") -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)
