"""Autobahn|Testsuite cases that run in seconds, on both servers of ``compliance/``.

The full run (517 cases, several minutes) is ``python compliance/score.py``; its results
are in ``compliance/README.rst``.  Here the framing, ping, reserved-bit, opcode,
fragmentation, UTF-8, close, limits and auto-fragmentation groups, and one case of each
permessage-deflate group, must all pass, and none may be NON-STRICT.

7.9.x is left out: those Close codes are echoed as workerd echoes them (RULES B4), which
Autobahn fails (see ``compliance/README.rst``).

The conformance tooling lives beside the repository (``../shared/conformance``); without
it the tests are skipped, or fail when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "conformance"
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.1.1", "13.1.1"]
EXCLUDED = ["7.9.*"]  # RULES B4: the peer's Close code is echoed unchecked


@pytest.mark.parametrize("server", ["gevent", "werkzeug"])
def test_autobahn_quick_groups(tmp_path: Path, server: str) -> None:
    if not (CONFORMANCE / "score.sh").exists():
        message = "the conformance tooling is not at %s" % CONFORMANCE
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "report"
    selection = [a for case in CASES for a in ("-i", case)] + \
        [a for case in EXCLUDED for a in ("-x", case)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compliance" / "score.py"), "--server", server,
         "-o", str(out), "--", "--no-html", "--case-timeout", "20", *selection],
        capture_output=True, text=True, timeout=55)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    verdicts = summary["verdicts"]
    not_ok = {case: row for case, row in summary["cases"].items()
              if row["behavior"] != "OK" or row["behaviorClose"] != "OK"}
    informational = {"7.1.6", "7.13.1", "7.13.2"}  # RFC 6455 prescribes nothing here
    assert summary["passed"] == summary["cases_total"] > 250, not_ok
    assert verdicts["NON-STRICT"] == 0 and set(not_ok) <= informational, not_ok
