"""Autobahn|Testsuite cases that run in seconds, on both servers of ``compliance/``.

The full run (517 cases, several minutes) is ``python compliance/score.py``; its results
are in ``compliance/README.rst``.  Here the framing, ping, reserved-bit, opcode,
fragmentation, UTF-8, close, limits and auto-fragmentation groups, and one case of each
permessage-deflate group, must all pass, and none may be NON-STRICT.

7.9.x (Close codes RFC 6455 forbids) fail the connection with 1002, as SPEC §8.1 has it.
The first test installs the scorer (a one-time step, longer than a case's budget).

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


@pytest.fixture(scope="module")
def tooling() -> Path:
    """The conformance tooling, its runner installed once (``setup.sh`` is idempotent)."""
    if not (CONFORMANCE / "score.sh").exists():
        message = "the conformance tooling is not at %s" % CONFORMANCE
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run(["bash", str(CONFORMANCE / "setup.sh")], check=True, timeout=280,
                   capture_output=True)
    return CONFORMANCE


@pytest.mark.timeout(300)
@pytest.mark.parametrize("server", ["gevent", "werkzeug"])
def test_autobahn_quick_groups(tooling: Path, tmp_path: Path, server: str) -> None:
    out = tmp_path / "report"
    selection = [a for case in CASES for a in ("-i", case)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compliance" / "score.py"), "--server", server,
         "--conformance", str(tooling),
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
