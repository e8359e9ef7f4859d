"""Differential fuzz: random frame sequences on workerd and on cfws_sync, compared.

::

    python -m tests.compat.difffuzz --workerd PATH/TO/workerd
                                    [--family frames|deflate|app]
                                    [--seeds 150] [--first 0] [--verbose]

Runs one family of the scenarios of :mod:`tests.compat.fuzz_scenarios` (random frame
sequences, the same under permessage-deflate, or random behaviour of the app) with the
oracle's own runner (``../shared/oracle``, copied to a scratch folder) on workerd and on
cfws_sync (the target of ``tox -e compat``), removes the deliberate differences of
SPEC §8 from both (:func:`tests.compat.normalise.normalise`), and prints each scenario
whose traces still differ: one line of frames per side.

Read them rather than count them.  Some are races no implementation decides (a reset
that overtakes a Close while the peer is still writing, RULES E5; a pong kj drops when
a newer one is queued).  Some are README differences 14 and 15 (kj's stray bytes after
a control frame, which in a Close make the reason invalid UTF-8).  And a damaged
compressed text that inflates to invalid UTF-8 fails with 1007 by SPEC §8.1, which the
normalisation cannot see: the trace holds the compressed bytes.  A difference worth
fixing becomes a scenario in ``extra/``.
Get a workerd with ``npm install workerd`` (the shared traces' version: 1.20261117.1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from .normalise import normalise
from .test_oracle import ROOT, copy_oracle, section_diff

HERE = Path(__file__).resolve().parent


FAMILIES = {"frames": "z_fuzz_", "deflate": "z_deflate_", "app": "z_app_"}


def record(oracle: Path, out: Path, env: dict[str, str], prefix: str,
           target: Optional[str]) -> None:
    """Run the fuzz scenarios named ``prefix*`` on ``target`` (workerd when ``None``)."""
    command = [sys.executable, "oracle.py", "--out", str(out), "-k", prefix]
    if target is not None:
        command[2:2] = ["--target", target]
    subprocess.run(command, cwd=str(oracle), env=env, check=True, stdout=subprocess.DEVNULL)


def brief(entry: dict[str, Any]) -> Optional[str]:
    """One peer entry as a short word: ``>text/nofin(3)``, ``<close 1002 '...'``."""
    if entry.get("action") == "send":
        flags = ("" if entry.get("fin", True) else "/nofin") + (
            "/rsv%d" % entry["rsv"] if entry.get("rsv") else "")
        return ">%s%s(%d)" % (entry["op"], flags, entry.get("len", 0))
    if entry.get("event") == "recv":
        if entry["op"] == "close":
            return "<close %s %r" % (entry.get("code"), entry.get("reason"))
        return "<%s(%d)" % (entry["op"], entry.get("len", 0))
    if entry.get("event") == "send_failed":
        return "!" + str(entry["error"])
    if entry.get("event") == "tcp_eof":
        return "EOF"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workerd", default=os.environ.get("WORKERD"),
                        help="the workerd binary (default: $WORKERD)")
    parser.add_argument("--family", choices=sorted(FAMILIES), default="frames")
    parser.add_argument("--seeds", type=int, default=150)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print each difference")
    args = parser.parse_args()
    if not args.workerd:
        parser.error("give --workerd or set WORKERD")
    with tempfile.TemporaryDirectory() as scratch:
        oracle = copy_oracle(Path(scratch) / "oracle", [HERE / "fuzz_scenarios.py"])
        env = dict(os.environ, PYTHONPATH=str(ROOT), WORKERD=args.workerd,
                   FUZZ_FIRST=str(args.first), FUZZ_SEEDS=str(args.seeds))
        theirs, ours = Path(scratch) / "workerd", Path(scratch) / "cfws_sync"
        prefix = FAMILIES[args.family]
        record(oracle, theirs, env, prefix, None)
        record(oracle, ours, env, prefix, "tests.compat.oracle_target:PyTarget")
        differing = 0
        for path in sorted(theirs.glob(prefix + "*.json")):
            recorded = json.loads(path.read_text(encoding="utf-8"))
            ran = json.loads((ours / path.name).read_text(encoding="utf-8"))
            diff = section_diff(normalise(recorded), normalise(ran))
            if not diff:
                continue
            differing += 1
            print("%s (%s)" % (path.stem, recorded.get("variant")))
            for side, trace in (("workerd  ", recorded), ("cfws_sync", ran)):
                print("  %s %s" % (side, " ".join(filter(None, map(brief, trace["peer"])))))
            if args.verbose:
                print("\n".join("    " + line[:160] for line in diff))
        print("%d of %d scenarios differ" % (differing, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
