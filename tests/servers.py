"""Start real WSGI servers for tests, each in its own process, on a free 127.0.0.1 port.

``SERVER_KINDS`` is the matrix: gevent pywsgi (monkey-patched), gunicorn with the gevent
and gthread workers, and Werkzeug's threaded development server.

:func:`running_server` binds the listening socket itself and hands it to the server
process, so no other process can take the port between choosing it and serving on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
SERVER_KINDS = ("gevent", "gunicorn-gevent", "gunicorn-gthread", "werkzeug")


def free_port() -> int:
    """A port that was free a moment ago (for servers that bind by themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: Optional[subprocess.Popen] = None,
                  timeout: float = 20.0) -> None:
    """Wait until something accepts connections on ``port`` (and ``proc`` still runs)."""
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


def wait_until_serving(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Wait until the server answers an HTTP request (any status will do).

    On an inherited listening socket connections are accepted by the kernel at once,
    so only an answer tells that the server runs.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.settimeout(max(0.1, min(1.0, deadline - time.monotonic())))
                s.sendall(b"GET /__ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/"):
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("server on port %d did not answer in %ss" % (port, timeout))


def _gunicorn_extra() -> list[str]:
    """Options newer gunicorn versions need here: no shared control socket."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover
        return []
    names = {setting.name for setting in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


def server_command(kind: str, app: str, port: int, fd: Optional[int] = None) -> list[str]:
    """The command line that runs ``app`` on server ``kind``: on ``127.0.0.1:port``, or
    on the inherited listening socket ``fd`` when one is given."""
    bind = "fd://%d" % fd if fd is not None else "127.0.0.1:%d" % port
    common = ["-w", "1", "-b", bind, "--graceful-timeout", "1", "--timeout", "0"] \
        + _gunicorn_extra()
    if kind == "gunicorn-gevent":
        return [sys.executable, "-m", "gunicorn", "-k", "gevent",
                "--worker-connections", "2000"] + common + [app]
    if kind == "gunicorn-gthread":
        return [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "64"] \
            + common + [app]
    if kind not in SERVER_KINDS + ("gevent-pool", "gevent-handler"):
        raise ValueError("unknown server kind %r" % kind)
    command = [sys.executable, "-m", "tests.serve", kind, app, str(port)]
    return command + [str(fd)] if fd is not None else command


@contextlib.contextmanager
def running_server(kind: str, app: str, env: Optional[dict[str, str]] = None,
                   log_path: Optional[Path] = None) -> Iterator["Server"]:
    """Run ``app`` (``module:attr``) on server ``kind``; yield a :class:`Server`.

    The server process (and anything it started) is ended on exit.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.set_inheritable(True)
    port, fd = listener.getsockname()[1], listener.fileno()
    environment = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(server_command(kind, app, port, fd), cwd=str(ROOT),
                                env=environment, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, pass_fds=(fd,))
    finally:
        listener.close()  # the server holds its own copy
    try:
        wait_until_serving(port, proc)
        yield Server(kind, port, proc, log_path)
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
    """A running server: ``ws_url(path)``, ``http_url(path)``, its process, and the file
    its output goes to (``log_path``, if one was asked for)."""

    def __init__(self, kind: str, port: int, proc: subprocess.Popen,
                 log_path: Optional[Path] = None) -> None:
        self.kind = kind
        self.port = port
        self.proc = proc
        self.log_path = log_path

    def ws_url(self, path: str = "/") -> str:
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def http_url(self, path: str = "/") -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)


def process_stats(server: "Server") -> dict:
    """The server process's fds and threads from /proc, and its greenlets from the app
    (``/__stats`` of ``tests.apps:matrix``)."""
    with urllib.request.urlopen(server.http_url("/__stats"), timeout=5) as response:
        data = json.loads(response.read())
    pid = data["pid"]
    # gunicorn's gthread pool grows on demand up to --threads and keeps its threads:
    # those are counted apart (and bounded), all other threads must come back.
    return {"fds": len(os.listdir("/proc/%d/fd" % pid)),
            "threads": len(os.listdir("/proc/%d/task" % pid)) - data["pool_threads"],
            "greenlets": data["greenlets"], "pool": data["pool_threads"]}
