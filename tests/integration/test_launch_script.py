"""scripts/launch_sagas.py, run as a user runs it: its own embedded Ray, SQLite journal.

The failure and crash cases attach to the session's Ray in a namespace of their own (a
user's second script on a running cluster), which saves starting a Ray for each.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.conftest import ROOT, kill_namespace

FORWARD = ["inventory.reserve_inventory", "payment.process_payment", "shipping.create_shipment"]


def run_script(tmp_path, env, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "launch_sagas.py"), *args, "--json",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # exactly one JSON object, nothing else


@pytest.fixture
def attached(ray_session, tmp_path):
    """Run the script against the session's Ray, in a namespace of its own."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}
    address = ray_session.get_runtime_context().gcs_address
    yield lambda *args: run_script(tmp_path, env, *args, "--address", address,
                                   "--namespace", namespace)
    kill_namespace(namespace)


def test_three_sagas_complete_and_a_newcomer_sees_only_progress_and_the_table(tmp_path):
    """What the README's first command shows: its own Ray, progress, the table, where the
    logs are; none of Ray's messages or the actors' log lines in between."""
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-", dir="/tmp"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "launch_sagas.py"), "--count", "3",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = proc.stdout + proc.stderr
    assert shown.count(" COMPLETED ") >= 3 and "sagas ended" in shown
    for name in FORWARD:
        assert re.search(rf"{re.escape(name)}\s+3\n", shown), (name, shown)
    assert re.search(r"^logs: \S+/logs ", shown, re.M), shown
    for noise in ("pid=", "deduplicat", "worker.py", "Token authentication"):
        assert noise not in shown, (noise, shown)
    actors_lines = r"\b(participant|saga|supervisor|registry|host|bus) saga="  # their loguru
    assert not re.search(actors_lines, shown), shown


def test_fail_step_compensates_and_restores_stock(attached):
    out = attached("--count", "3", "--fail-step", "create_shipment")
    for saga in out["sagas"]:
        assert saga["status"] == "FAILED"
        assert saga["compensated_steps"] == ["process_payment", "reserve_inventory"]
    assert out["effects"] == {
        "inventory.release_inventory": 3, "inventory.reserve_inventory": 3,
        "payment.process_payment": 3, "payment.refund_payment": 3,
    }
    before, after = out["participants"]["before"], out["participants"]["after"]
    assert after["stock"] == before["stock"]
    assert after["payment"]["net_cents"] == before["payment"]["net_cents"]


def test_crash_step_completes_and_pays_once(attached):
    out = attached("--count", "3", "--crash-step", "process_payment")
    assert [s["status"] for s in out["sagas"]] == ["COMPLETED"] * 3
    assert len(out["crashed"]) == 3  # every saga's actor really was killed once
    assert out["effects"]["payment.process_payment"] == 3


# (the plain forward run is the crash run's outcome too: 3 COMPLETED, each effect 3 times)
CHOREOGRAPHY = [
    (["--fail-step", "process_payment"], ["FAILED"] * 3, ["reserve_inventory"],
     {"inventory.reserve_inventory": 3, "inventory.release_inventory": 3}),
    (["--fail-step", "create_shipment"], ["FAILED"] * 3,
     ["process_payment", "reserve_inventory"],
     {"inventory.reserve_inventory": 3, "inventory.release_inventory": 3,
      "payment.process_payment": 3, "payment.refund_payment": 3}),
    (["--crash-step", "process_payment"], ["COMPLETED"] * 3, [],
     {name: 3 for name in FORWARD}),
]


@pytest.mark.parametrize(("args", "statuses", "compensated", "effects"), CHOREOGRAPHY,
                         ids=["payment-fails", "shipment-fails", "crash-payment"])
def test_the_order_choreography_from_the_launch_script(attached, args, statuses, compensated,
                                                       effects):
    out = attached("order_choreography", "--count", "3", *args)
    assert [s["status"] for s in out["sagas"]] == statuses
    assert all(s["compensated_steps"] == compensated for s in out["sagas"])
    assert out["effects"] == effects  # from the participants' own ledgers
    before, after = out["participants"]["before"], out["participants"]["after"]
    if statuses[0] == "FAILED":  # stock and money back where they started
        assert after["stock"] == before["stock"]
        assert after["payment"]["net_cents"] == before["payment"]["net_cents"]
    if "--crash-step" in args:
        assert len(out["crashed"]) == 3  # the participant was killed mid-handler, per saga


BRANCHES = ["authorize_payment", "reserve_inventory"]
UNDONE = {"inventory.reserve_inventory": 3, "inventory.release_inventory": 3,
          "payment.process_payment": 3, "payment.refund_payment": 3}
PARALLEL = [
    ([], "COMPLETED", {*BRANCHES, "create_shipment"}, {name: 3 for name in FORWARD}),
    (["--fail-step", "authorize_payment"], "FAILED", {"reserve_inventory"},
     {"inventory.reserve_inventory": 3, "inventory.release_inventory": 3}),
    (["--crash-step", "create_shipment"], "COMPLETED", {*BRANCHES, "create_shipment"},
     {name: 3 for name in FORWARD}),
    (["--no-confirm"], "FAILED", set(BRANCHES), UNDONE),
]


@pytest.mark.parametrize(("args", "status", "completed", "effects"), PARALLEL,
                         ids=["captured", "payment-fails", "crash-shipment", "no-capture"])
def test_the_parallel_order_choreography_from_the_launch_script(attached, args, status,
                                                                completed, effects):
    """Two branches side by side, a join with the provider's capture webhook (sent by a
    separate process, found by order id): the same contract as the other examples."""
    out = attached("order_choreography_parallel", "--count", "3", *args)
    assert [s["status"] for s in out["sagas"]] == [status] * 3
    racing = "authorize_payment" in args  # the inventory branch runs beside the failure
    for s in out["sagas"]:
        if racing:
            # it completed before the payment failed and was undone, or it was stopped in
            # flight: settled, a reservation that applied is released, one that had not is
            # fenced
            assert set(s["completed_steps"]) <= set(s["compensated_steps"]) <= completed
        else:
            assert set(s["completed_steps"]) == completed
        if status == "FAILED" and not racing:  # every branch that completed undone,
            assert s["compensated_steps"] == s["completed_steps"][::-1]  # newest first
    if racing:  # from the participants' own ledgers: each reservation that applied undone
        reserved = out["effects"].get("inventory.reserve_inventory", 0)
        assert reserved == out["effects"].get("inventory.release_inventory", 0) <= 3
        assert set(out["effects"]) <= set(effects)
    else:
        assert out["effects"] == effects  # from the participants' own ledgers
    before, after = out["participants"]["before"], out["participants"]["after"]
    if status == "FAILED":
        assert after["stock"] == before["stock"]
        assert after["payment"]["net_cents"] == before["payment"]["net_cents"]
    if "--crash-step" in args:
        assert len(out["crashed"]) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--fail-step", "nope"], "--fail-step 'nope' is not a step of order_fulfillment"),
    (["--count", "0"], "--count must be at least 1"),
    (["trip_booking", "--no-approve"], "--no-approve applies to examples whose sagas wait "
     "for a signal (business_trip); trip_booking has none"),
    (["order_choreography", "--approve-after", "2"], "--approve-after applies to examples"),
    (["order_choreography", "--no-confirm"], "--no-confirm applies to examples that take "
     "events from outside (order_choreography_parallel); order_choreography takes none"),
])
def test_bad_arguments_are_clear(tmp_path, args, message):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "launch_sagas.py"), *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("tool", ["launch", "cli"])
def test_an_unreachable_cluster_is_a_clear_error_that_changes_nothing(tmp_path, tool):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    if tool == "launch":
        cmd = [sys.executable, str(ROOT / "scripts" / "launch_sagas.py"), "--address", address,
               "--data-dir", str(tmp_path / "data")]
    else:
        cmd = [os.path.join(os.path.dirname(sys.executable), "saga-actors"), "--address",
               address, "list"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"cannot reach the Ray cluster at {address}: Connection refused" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 20  # not Ray's minute of retries
    assert not (tmp_path / "data").exists()  # no journal was created


def test_a_journal_in_a_bad_way_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "journal.sqlite").write_bytes(b"not a database" * 100)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "launch_sagas.py"),
                           "--data-dir", str(data)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "is corrupt or not an SQLite file" in proc.stderr
    assert (data / "journal.sqlite").read_bytes() == b"not a database" * 100
