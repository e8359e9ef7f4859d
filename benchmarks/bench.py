"""Benchmark cfws_sync beside flask-sock and websockets, in one interleaved run.

``python benchmarks/bench.py [--repeats 3] [--quick] [--targets a,b] [--workloads w1,w2]``

Each (repeat, workload) runs every target in turn on a fresh server process, rotating the
order between repeats.  The table shows medians over repeats and, for each target, the
median of its per-repeat ratio to the baseline (flask-sock on gevent) measured back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loadclient  # noqa: E402

TARGETS = {  # name -> (script, extra arguments), or ("gunicorn", module:app)
    "cfws_sync": ("cfws_sync_server.py",),
    "flask-sock": ("flask_sock_server.py",),
    "websockets": ("websockets_server.py",),
    "cfws_sync-apart": ("cfws_sync_server.py", "apart"),  # end_request_at_handshake
    "cfws_sync-werkzeug": ("cfws_sync_server.py", "werkzeug"),
    "flask-sock-werkzeug": ("flask_sock_server.py", "werkzeug"),
    "cfws_sync-gthread": ("gunicorn", "cfws_sync_server:app"),
    "flask-sock-gthread": ("gunicorn", "flask_sock_server:app"),
}
#: Threads of gunicorn's gthread worker: one per open WebSocket, for either library.
GTHREAD_THREADS = 400
DEFAULT_TARGETS = ["cfws_sync", "flask-sock", "websockets"]
BASELINE = "flask-sock"  # --baseline flask-sock-werkzeug for the threaded pair
# workload -> (metric, higher is better, coroutine factory (port, pid, quick))
WORKLOADS = {
    "echo_small_c1": ("msgs_per_s", True, lambda p, pid, q: loadclient.echo_small(p, 1, 0.3, 0.7 if q else 1.0)),
    "echo_small_c16": ("msgs_per_s", True, lambda p, pid, q: loadclient.echo_small(p, 16, 0.3, 0.7 if q else 1.0)),
    "echo_small_c128": ("msgs_per_s", True, lambda p, pid, q: loadclient.echo_small(p, 128, 0.3, 0.7 if q else 1.0)),
    "echo_large": ("MB_per_s", True, lambda p, pid, q: loadclient.echo_large(p, 0.7 if q else 1.0)),
    "connect_rate_par16": ("conns_per_s", True, lambda p, pid, q: loadclient.connect_rate(p, 16, 0.7 if q else 1.0)),
    "idle_conns_1000": ("KiB_per_conn", False, lambda p, pid, q: loadclient.idle_conns(p, pid, 1000)),
    "broadcast_500": ("p50_ms", False, lambda p, pid, q: loadclient.broadcast(p, 500, 10 if q else 30)),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(target: str):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    script, *extra = TARGETS[target]
    if script == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1",
                   "--threads", str(GTHREAD_THREADS), "-b", "127.0.0.1:%d" % port,
                   "--chdir", str(HERE / "servers"), *extra]
    else:
        command = [sys.executable, str(HERE / "servers" / script), str(port), *extra]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("%s did not start" % target)
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run(targets: list[str], workloads: list[str], repeats: int, quick: bool) -> dict:
    results: dict = {w: {t: [] for t in targets} for w in workloads}
    for r in range(repeats):
        for w in workloads:
            metric, _, factory = WORKLOADS[w]
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for t in order:
                with server(t) as (port, pid):
                    try:
                        value = asyncio.run(asyncio.wait_for(factory(port, pid, quick), 120))[metric]
                    except Exception as exc:  # a failed run is shown, not hidden
                        print("FAIL %s %s: %r" % (t, w, exc), file=sys.stderr)
                        value = float("nan")
                results[w][t].append(value)
                print("  repeat %d %-20s %-11s %10.1f" % (r + 1, w, t, value), file=sys.stderr)
    return results


def table(results: dict, targets: list[str], baseline: str = BASELINE) -> str:
    rows = ["| workload | " + " | ".join(targets) + " | " +
            " | ".join("%s / %s" % (t, baseline) for t in targets if t != baseline) + " |"]
    rows.append("|---" * (1 + len(targets) + len(targets) - (baseline in targets)) + "|")
    for w, per_target in results.items():
        metric, higher, _ = WORKLOADS[w]
        cells = ["%.1f" % statistics.median(per_target[t]) for t in targets]
        ratios = []
        for t in targets:
            if t == baseline or baseline not in per_target:
                continue
            pairs = [a / b for a, b in zip(per_target[t], per_target[baseline]) if b]
            ratios.append("%.2f×" % statistics.median(pairs) if pairs else "n/a")
        arrow = "↑" if higher else "↓"
        rows.append("| %s %s (%s) | %s | %s |" % (w, arrow, metric, " | ".join(cells), " | ".join(ratios)))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat, shorter runs")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="from: %s" % ", ".join(TARGETS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    targets = args.targets.split(",")
    workloads = args.workloads.split(",")
    for name in targets + workloads:
        if name not in TARGETS and name not in WORKLOADS:
            parser.error("unknown target or workload %r" % name)
    repeats = 1 if args.quick else args.repeats
    results = run(targets, workloads, repeats, args.quick)
    print("%s, Python %s, %d cores; medians of %d repeat(s); ratios are medians of paired runs"
          % (platform.platform(), platform.python_version(), os.cpu_count() or 0, repeats))
    print(table(results, targets, args.baseline))


if __name__ == "__main__":
    main()
