"""CI's seeded chaos run: 200 sagas under faults, kills and a whole-Ray restart.

The script checks its invariants from the participants' own stores and the journal; this
test runs it as a user would and asserts on its JSON report. Most sagas are hosted here
(dedicated ones start about 3 per second on this machine); `scripts/chaos.py` alone runs
an even mix, and thousands when asked. It starts early (`SLOW_FIRST` in tests/conftest.py),
on its own xdist worker, beside the cluster tests on the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT

INVARIANTS = ("lost", "duplicate_effects", "wrong_effects", "unbalanced", "mismatched",
              "outside")


@pytest.mark.timeout(240)
def test_seeded_chaos_run_keeps_every_invariant():
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-", dir="/tmp"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--sagas", "200", "--seed", "1",
         "--dedicated", "0.1", "--json"],
        capture_output=True, text=True, timeout=230, env=env, cwd=ROOT,
    )
    assert proc.stdout, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert {k: report[k] for k in INVARIANTS} == dict.fromkeys(INVARIANTS, 0), report["examples"]
    assert report["sagas"] == report["terminal"] == 200
    assert proc.returncode == 0
    # the run really was chaotic: faults of every kind, kills, and the whole-Ray restart
    faults = report["faults"]
    assert faults["ray_restart"] == 1
    assert faults["declined_payment"] and faults["slow_participant"]
    assert sum(n for k, n in faults.items() if k.startswith("kill_")) >= 5
    assert report["by_status"]["COMPLETED"] and report["by_status"]["FAILED"]
    # the parallel orders' captures came early, on time, twice, never, and too late
    for kind in ("capture_early", "capture_on_time", "capture_duplicate", "capture_withheld",
                 "capture_late_refused",
                 # and the participants' replicas were killed and scaled up and down
                 "kill_replica", "scale_up", "scale_down"):
        assert faults[kind], (kind, faults)
