"""The oracle's second target: the ported Worker on cfws_sync, one process per variant.

``python3 oracle.py --target tests.compat.oracle_target:PyTarget --out DIR`` (with the
repository root on ``PYTHONPATH``) runs the oracle's scenarios against it; the interface
is the one the oracle's README describes under "Adding a second target".
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterable, Optional

from .jsport import VARIANTS

ROOT = Path(__file__).resolve().parent.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PyTarget:
    """Serves ``tests.compat.worker_app`` for each variant the chosen scenarios use.

    :param variants: oracle variant names (``current``, ``legacy``, ...).
    """

    name = "python"

    def __init__(self, variants: Optional[Iterable[str]] = None) -> None:
        self.variants = list(variants or VARIANTS)
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError("unknown variants: %s" % ", ".join(unknown))
        self.ports: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def start(self) -> "PyTarget":
        """Start one server process per variant and wait until each accepts connections."""
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        for variant in self.variants:
            port = self.ports[variant] = _free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.compat.worker_app", "--port", str(port),
                 "--variant", variant],
                cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
            self.procs[variant] = proc
            assert proc.stdout is not None
            threading.Thread(target=self._pump, args=(variant, proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 30
        pending = set(self.variants)
        while pending and time.monotonic() < deadline:
            for variant in list(pending):
                if self.procs[variant].poll() is not None:
                    self.stop()
                    raise RuntimeError("worker_app %s exited:\n%s" % (variant, self._tail()))
                try:
                    socket.create_connection(("127.0.0.1", self.ports[variant]), 0.2).close()
                    pending.discard(variant)
                except OSError:
                    pass
            time.sleep(0.05)
        if pending:
            self.stop()
            raise RuntimeError("worker_app did not start: %s\n%s" % (sorted(pending), self._tail()))
        return self

    def _pump(self, variant: str, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self._lines.append("[%s] %s" % (variant, line))

    def _tail(self) -> str:
        with self._lock:
            return "".join(self._lines[-40:])

    def stop(self) -> None:
        """Stop every server process, by pid.  (A server also stops by itself when the
        process that started it is gone.)"""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = {}

    def base(self, variant: str) -> str:
        """``"127.0.0.1:PORT"`` of the server for ``variant``."""
        return "127.0.0.1:%d" % self.ports[variant]

    def mark(self) -> int:
        """The position in the servers' output."""
        with self._lock:
            return len(self._lines)

    def runtime_log_since(self, mark: int, scrub: list[str]) -> list[str]:
        """The servers' log lines since ``mark``, ports and run ids scrubbed."""
        with self._lock:
            lines = self._lines[mark:]
        out = []
        for line in lines:
            line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line.rstrip("\n"))
            for s in scrub:
                line = line.replace(s, "ID")
            if line.strip():
                out.append(line)
        return out

    def describe(self) -> dict[str, Any]:
        """Written to the traces' ``_target.json``."""
        import cfws_sync

        return {"target": self.name, "version": "cfws_sync %s" % cfws_sync.__version__,
                "variants": {v: {"compatibilityDate": VARIANTS[v][0],
                                 "compatibilityFlags": VARIANTS[v][1]}
                             for v in self.variants}}
