"""The process running a saga dies at the two instants that matter most: right after the
journal says a call was sent (the call never went out), and right after the participant
answered (the answer was never journaled). Either way the saga resumes from the journal,
re-sends the same idempotency key, and each effect happens exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.testing import Fault

pytestmark = pytest.mark.ray

# the first action is journaled as sent at admission: the process dies once it applied,
# before anything else was journaled
POINTS = ("reserve_inventory:action:replied",
          "process_payment:action:sent", "process_payment:action:replied",
          "reserve_inventory:compensation:sent", "reserve_inventory:compensation:replied")


@pytest.mark.parametrize("placement", ["dedicated", "hosted"])
def test_crashes_between_journal_and_participant_apply_each_effect_once(make_harness,
                                                                        placement):
    harness = make_harness(placement=placement, crash_points=POINTS)
    rt = harness.runtime
    rt.register(ORDER_FULFILLMENT)
    actors = harness.deploy_many(PARTICIPANTS)
    ok = harness.start("order_fulfillment", sample_input(1))
    assert rt.wait(ok, timeout_s=90).status is SagaStatus.COMPLETED
    ray.get(actors["shipping"].set_faults.remote({"create_shipment": Fault(fail=True)}))
    failed = harness.start("order_fulfillment", sample_input(2))
    rec = rt.wait(failed, timeout_s=90)
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["process_payment", "reserve_inventory"]

    crashed = Path(rt.config.data_dir) / "crashed"
    # every point really was hit: the successful saga at the payment, the failed one at
    # both payment points and both compensation points
    assert sorted(p.name for p in crashed.iterdir()) == sorted(
        [f"{ok}@{p}" for p in POINTS[:3]] + [f"{failed}@{p}" for p in POINTS])
    for saga_id, expected in [
        (ok, ["inventory.reserve_inventory", "payment.process_payment",
              "shipping.create_shipment"]),
        (failed, ["inventory.release_inventory", "inventory.reserve_inventory",
                  "payment.process_payment", "payment.refund_payment"]),
    ]:
        applied = sorted(f"{name}.{e['method']}" for name, a in actors.items()
                         for e in ray.get(a.ledger.remote(saga_id)))
        assert applied == expected  # once each, whatever was re-sent
    # the sent-but-not-called payment went out with the same attempt number after resuming
    sent = [t.attempt for t in rt.history(ok)
            if t.event == "action_sent" and t.step == "process_payment"]
    assert sent == [1]
    # a hosted saga's first action: sent once, journaled at admission, and sent again
    # after the crash without a new attempt
    history = [(t.event, t.step, t.attempt) for t in rt.history(ok)]
    if placement == "hosted":
        assert history[:3] == [("saga_started", None, 0),
                               ("action_sent", "reserve_inventory", 1),
                               ("resumed", "reserve_inventory", 1)]
    assert [a for e, s, a in history if (e, s) == ("action_sent", "reserve_inventory")] == [1]
