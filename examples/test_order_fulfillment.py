"""How to test your own saga with saga_actors' test kit: copy this file next to your saga.

No Ray, no cluster: each test runs the real state machine against the real participant
classes (each with its own SQLite store in a temporary folder) on a fake clock, in
milliseconds. `pytest examples/test_order_fulfillment.py` runs it.
"""

from __future__ import annotations

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.testing import SagaTestKit


def kit() -> SagaTestKit:
    return SagaTestKit(ORDER_FULFILLMENT, PARTICIPANTS)


def test_an_order_completes_with_each_effect_once():
    k = kit()
    rec = k.run(sample_input(1))
    assert rec.status is SagaStatus.COMPLETED
    assert rec.completed == ["reserve_inventory", "process_payment", "create_shipment"]
    assert k.effects("payment") == {"process_payment": 1}


def test_a_shipment_that_fails_for_good_refunds_and_releases():
    k = kit()
    k.inject("create_shipment", fail=True)  # non-retryable: compensate at once
    rec = k.run(sample_input(2))
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["process_payment", "reserve_inventory"]
    assert k.participant("payment").balance()["net_cents"] == 0
    assert k.participant("inventory").stock_levels() == {"GADGET": 10_000, "GIZMO": 10_000,
                                                         "WIDGET": 10_000}


def test_a_flaky_payment_is_retried_with_backoff_and_charged_once():
    k = kit()
    k.inject("process_payment", attempt=1, fail=True, retryable=True)
    k.inject("process_payment", attempt=2, timeout=True)  # applied, but the reply is lost
    rec = k.run(sample_input(3))
    assert rec.status is SagaStatus.COMPLETED
    assert k.effects("payment") == {"process_payment": 1}  # attempt 3 got attempt 2's charge
    assert [e for e in k.events(rec.saga_id) if e[1] == "process_payment"][-1] == (
        "step_succeeded", "process_payment")
    assert k.clock.sleeps  # the backoff and the timeout took no real time


def test_a_crash_after_the_charge_does_not_charge_twice():
    k = kit()
    k.inject("process_payment", crash="replied")  # the answer never reached the journal
    rec = k.run(sample_input(4))
    assert rec.status is SagaStatus.COMPLETED and k.crashes == 1
    assert k.effects("payment") == {"process_payment": 1}
    assert ("resumed", "process_payment") in k.events(rec.saga_id)  # rebuilt from the journal


def test_a_resent_request_is_applied_once():
    k = kit()
    k.inject("reserve_inventory", duplicate=True)
    rec = k.run(sample_input(5))
    assert rec.status is SagaStatus.COMPLETED
    assert k.effects("inventory") == {"reserve_inventory": 1}
