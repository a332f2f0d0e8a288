"""The whole Ray cluster dies mid-flight; a new one with the same journal finishes every
saga, each effect applied once."""

from __future__ import annotations

import json
import sys

from saga_actors.journal import open_journal
from tests.cluster import LocalCluster
from tests.conftest import poll


def test_whole_cluster_restart_mid_flight(tmp_path):
    data = tmp_path / "data"
    journal = open_journal(f"sqlite:///{data}/journal.sqlite")
    first = LocalCluster().start()
    try:
        out = first.run(sys.executable, "scripts/launch_sagas.py", "--address", first.address,
                        "--no-wait", "--count", "4", "--json", "--slow-step",
                        "process_payment", "--slow-s", "30", "--data-dir", str(data))
        ids = [s["saga_id"] for s in json.loads(out.stdout)["sagas"]]

        def all_paying():
            recs = [journal.load(i) for i in ids]
            return all(r and r.current_step == "process_payment" and r.in_flight for r in recs)

        poll(all_paying, timeout_s=120, every_s=0.2, what="every saga mid-payment")
    finally:
        first.stop()  # power cut: every Ray process of that cluster is gone

    second = LocalCluster().start()
    try:
        out = second.run(sys.executable, "scripts/launch_sagas.py", "--address",
                         second.address, "--resume", "--json", "--data-dir", str(data),
                         "--timeout", "120")
    finally:
        second.stop()
    report = json.loads(out.stdout)
    assert sorted(s["saga_id"] for s in report["sagas"]) == sorted(ids)
    assert {s["status"] for s in report["sagas"]} == {"COMPLETED"}
    assert report["effects"] == {"inventory.reserve_inventory": 4,
                                 "payment.process_payment": 4,
                                 "shipping.create_shipment": 4}
    before, after = report["participants"]["before"], report["participants"]["after"]
    assert after["payment"]["charged_cents"] - before["payment"]["charged_cents"] == sum(
        journal.load(i).input["amount_cents"] for i in ids)
