"""Score cfws_sync's echo server with the Autobahn|Testsuite fuzzingclient cases.

::

    python compliance/score.py [--server gevent|werkzeug] [--conformance DIR] [-o OUTDIR]
                               [-- extra options for the scorer, e.g. -x '12.*']

Starts ``echo_server.py`` on a free 127.0.0.1 port, runs the conformance tooling's
``score.sh`` on it (from a private copy of ``--conformance``, by default
``../shared/conformance`` beside the repository; it runs Autobahn's own case files with
the ``kosoku`` runner, see its README), prints the score, and stops the server.
The exit status is the scorer's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CONFORMANCE = ROOT.parent / "shared" / "conformance"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: "subprocess.Popen[bytes]", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the echo server exited with status %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the echo server did not start within %ss" % timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("gevent", "werkzeug"), default="gevent")
    parser.add_argument("--conformance", type=Path, default=DEFAULT_CONFORMANCE,
                        help="the conformance tooling (score.sh, autobahn_score.py)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="report directory")
    parser.add_argument("scorer_args", nargs="*", help="passed to score.sh (after --)")
    args = parser.parse_args()
    if not (args.conformance / "score.sh").exists():
        raise SystemExit("no score.sh in %s (use --conformance DIR)" % args.conformance)
    work = Path(tempfile.mkdtemp(prefix="cfws-conformance-"))
    tooling = work / "conformance"
    shutil.copytree(args.conformance, tooling)
    for path in tooling.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    out = args.out or Path(tempfile.gettempdir()) / ("cfws-autobahn-%s" % args.server)
    port = free_port()
    log_path = out.parent / (out.name + ".server.log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as server_log:
        server = subprocess.Popen(
            [sys.executable, str(HERE / "echo_server.py"), "--port", str(port),
             "--server", args.server],
            cwd=str(ROOT), stdout=server_log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            wait_for_port(port, server)
            scorer = subprocess.run(
                [str(tooling / "score.sh"), "ws://127.0.0.1:%d/" % port, "-o", str(out),
                 *args.scorer_args])
            status = scorer.returncode
        finally:
            _stop(server)
            shutil.rmtree(work, ignore_errors=True)
    print("server log: %s" % log_path)
    return status


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
