"""Every oracle scenario, run against the ported Worker on cfws_sync, compared with workerd.

For each trace recorded on workerd (``shared/oracle/traces/``), the scenario is run again
against :class:`tests.compat.oracle_target.PyTarget` by the oracle's own runner, and the
two traces are compared section by section (``peer``, ``backend``, ``harness``,
``worker``) after :func:`tests.compat.normalise.normalise` has removed the deliberate
differences of SPEC §8.  Where a normalisation applied to cfws_sync's trace, the test
also checks that cfws_sync did what that SPEC item promises, so the normalisation cannot
hide a regression.

The oracle lives beside the repository (``../shared/oracle``).  Without it the tests are
skipped, or fail when ``CI`` is set.  ``extra/`` adds scenarios of our own, with the
traces workerd recorded for them (their files say how).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import pytest

from .normalise import first_violation, normalise

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT.parent / "shared" / "oracle"
#: Scenarios of our own, with the traces workerd recorded for them (each scenario file
#: says how).
EXTRA = Path(__file__).resolve().parent / "extra"
SECTIONS = ("peer", "backend", "harness", "worker")
RUN_TIMEOUT = 55.0  # seconds for one scenario (the longest take about 10 s)


def recorded_scenarios() -> list[str]:
    traces = ORACLE / "traces"
    if not traces.is_dir():
        return ["oracle-missing"]
    return sorted(p.stem for p in [*traces.glob("*.json"), *EXTRA.glob("*.json")]
                  if not p.name.startswith("_"))


def recorded_trace(name: str) -> dict[str, Any]:
    """What workerd did in scenario ``name``."""
    path = ORACLE / "traces" / (name + ".json")
    if not path.exists():
        path = EXTRA / (name + ".json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _client_side(name: str) -> bool:
    """Scenarios that need cfws_sync as a client (RULES K, J5)."""
    return name.startswith("k_") or name == "j_return_new_websocket"


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private, writable copy of the oracle (without its recorded traces)."""
    if not (ORACLE / "oracle.py").exists():
        message = "the differential oracle is not at %s" % ORACLE
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return copy_oracle(tmp_path_factory.mktemp("oracle") / "oracle", EXTRA.glob("*.py"))


def copy_oracle(copy: Path, scenarios: Iterable[Path]) -> Path:
    """Copy the oracle (without its recorded traces) to ``copy``, writable, with
    ``scenarios`` (files of our own) beside its own; return ``copy``."""
    shutil.copytree(ORACLE, copy, ignore=shutil.ignore_patterns(
        "traces", "node_modules", "__pycache__"))
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    for path in scenarios:
        shutil.copy(path, copy / "scenarios" / path.name)
    return copy


def run_scenario(oracle: Path, name: str, out: Path) -> dict[str, Any]:
    """Run one scenario against cfws_sync with the oracle's runner; return its trace."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "oracle.py", "--target", "tests.compat.oracle_target:PyTarget",
         "--out", str(out), "-k", name],
        cwd=str(oracle), env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    path = out / (name + ".json")
    assert path.exists(), "the oracle wrote no trace:\n%s\n%s" % (proc.stdout, proc.stderr)
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def section_diff(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """A unified diff per differing section, one JSON entry a line (as compare.py)."""
    lines: list[str] = []
    for section in SECTIONS:
        a = [json.dumps(e, ensure_ascii=False, sort_keys=True) for e in expected.get(section, [])]
        b = [json.dumps(e, ensure_ascii=False, sort_keys=True) for e in actual.get(section, [])]
        if a != b:
            lines.append("--- %s (workerd) / +++ (cfws_sync)" % section)
            lines.extend(difflib.unified_diff(a, b, lineterm="", n=2))
    return lines


# -- what each SPEC §8 item promises of cfws_sync's own trace ------------------------------------

def check_deliberate(raw: dict[str, Any], applied: list[str]) -> list[str]:
    """Problems with cfws_sync's trace where a SPEC §8 normalisation applied to it."""
    problems: list[str] = []
    worker = raw.get("worker", [])
    if "§8.2" in applied:
        problems.append("§8.2: cfws_sync reported an error after a clean close")
    if "§8.3" in applied:
        problems.append("§8.3: ready_state is not 3 in or after the close event of a drop")
    if "§8.1" in applied:
        found = first_violation(raw)
        assert found is not None
        section, index, why = found
        codes = [e.get("code") for e in raw[section][index + 1:]
                 if e.get("event") == "recv" and e.get("op") == "close"]
        if not codes or codes[0] not in (1002, 1007):
            problems.append("§8.1 (%s): the connection was not failed with 1002/1007, "
                            "Close codes received: %r" % (why, codes))
        elif not any(e.get("ev") == "error" and "statusCode = %d" % codes[0] in e.get("message", "")
                     for e in worker):
            problems.append("§8.1 (%s): no error event for the %d failure" % (why, codes[0]))
    if "§8.6" in applied:
        codes = [e.get("code") for e in raw.get("peer", [])
                 if e.get("event") == "recv" and e.get("op") == "close"]
        if 1011 not in codes:
            problems.append("§8.6: the peer got no Close 1011 after the listener's exception")
    if "§8.5" in applied:
        problems.extend(_check_types(worker))
    return problems


def _check_types(worker: list[dict[str, Any]]) -> list[str]:
    problems = []
    for entry in worker:
        label = str(entry.get("call", ""))
        threw = (entry.get("threw") or {}).get("name")
        if re.match(r"^\w+\.send\(new Blob\(", label):
            if not entry.get("ok"):
                problems.append("§8.5: %s did not send the Blob" % label)
        elif re.match(r"^\w+\.send\((\{.*\}|null|undefined)\)$", label):
            if threw != "TypeError":
                problems.append("§8.5: %s did not raise TypeError" % label)
        elif re.search(r"(?:^|\.)close\((-?\d+\.\d+|\"[^\"]*\"|NaN)(?:,|\))", label):
            if threw != "TypeError":
                problems.append("§8.5: %s did not raise TypeError" % label)
    return problems


#: Scenarios that differ for a reason README.rst documents ("Differences from Cloudflare
#: Workers"); each is expected to fail, strictly, so a fix or a change is noticed.
KNOWN_DIFFERENCES = {
    "j_return_new_websocket": "README difference 11: sockets outlive the request",
    "k_client_fetch_default__legacy": "README difference 11: sockets outlive the request",
    "k_client_ws_backend_closes__legacy": "README difference 11: sockets outlive the request",
    "k_client_ws_backend_closes__manual_reply":
        "README difference 11: sockets outlive the request",
    "k_proxy_passthrough": "README difference 10: no raw pass-through of a fetch() socket",
    # kj's four stray bytes; tests/test_matrix.py pins what cfws_sync does instead.
    "n_deflate_rsv1_ping": "README difference 14: no stray bytes after a control frame",
    "n_deflate_rsv1_ping_long": "README difference 14: no stray bytes after a control frame",
    "n_deflate_rsv1_close": "README difference 14: no stray bytes after a control frame",
    "n_deflate_fragmented_with_ping":
        "README difference 14: no stray bytes after a control frame",
    "f_ping_rsv1": "README difference 14: no stray bytes after a control frame",
    "a_end_half_open_then_fin":
        "README difference 16: a peer's FIN after its Close ends a half-open connection",
}
#: Timing-dependent: the same run may match or not (README difference 13).
TIMING = {"k_client_ws_ping_from_backend": "README difference 13: a ping that arrives with "
          "the handshake may be answered before the open handler runs"}


def _expectation(name: str) -> Any:
    if name in KNOWN_DIFFERENCES:
        return pytest.param(name, marks=pytest.mark.xfail(
            strict=True, reason=KNOWN_DIFFERENCES[name]))
    if name in TIMING:
        return pytest.param(name, marks=pytest.mark.xfail(strict=False, reason=TIMING[name]))
    return name


@pytest.mark.parametrize("name", [_expectation(name) for name in recorded_scenarios()])
def test_scenario_matches_workerd(oracle: Path, tmp_path: Path, name: str) -> None:
    recorded = recorded_trace(name)
    ours = run_scenario(oracle, name, tmp_path)
    assert "harness_error" not in ours, ours["harness_error"]
    expected, actual = normalise(recorded), normalise(ours)
    diff = section_diff(expected, actual)
    side = "client" if _client_side(name) else "server-side"
    assert not diff, "%s scenario %s differs from workerd:\n%s" % (side, name, "\n".join(diff))
    problems = check_deliberate(ours, actual.get("normalised", []))
    assert not problems, "\n".join(problems)
