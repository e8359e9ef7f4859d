"""The benchmark scripts still run and measure what they say (their figures are not
checked: speed is measured in benchmarks, never asserted in tests)."""

import os
import re
import subprocess
import sys

from tests.servers import ROOT


def test_connect_cpu_serves_every_connection_of_both_targets():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "connect_cpu.py"),
         "--parallel", "4", "--connections", "32", "--repeats", "2"],
        env=env, capture_output=True, text=True, timeout=120)
    # A connection that got no 101, or whose server never sent its FIN, fails the run.
    assert done.returncode == 0, done.stderr
    for target in ("cfws_sync", "pywsgi-floor"):
        assert re.search(r"^%s +\d+\.\d +\d+\.\d$" % target, done.stdout, re.M), done.stdout
    assert re.search(r"adds -?\d+\.\d µs per connection .* costs \d+\.\d\d× as much",
                     done.stdout), done.stdout
