"""The second example: a saga with a pivot, on Ray."""

from __future__ import annotations

import pytest
import ray

from examples.trip_booking import PARTICIPANTS, TRIP_BOOKING, sample_input
from saga_actors import Fault, SagaStatus

pytestmark = pytest.mark.ray


def deploy(harness, **faults):
    harness.runtime.register(TRIP_BOOKING)
    return {cls.name: harness.deploy(cls, faults=faults.get(cls.name)) for cls in PARTICIPANTS}


def test_failure_before_the_pivot_cancels_the_holds(placed):
    actors = deploy(placed, payment={"capture_payment": Fault(fail=True)})
    saga_id = placed.start("trip_booking", sample_input(1))
    rec = placed.runtime.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["book_hotel", "book_flight"]
    assert ray.get(actors["payment"].balance.remote())["charged_cents"] == 0


def test_after_the_pivot_a_flaky_step_is_retried_until_it_succeeds(placed):
    actors = deploy(placed, airline={
        "issue_tickets": Fault(fail=True, retryable=True, times=4)})
    saga_id = placed.start("trip_booking", sample_input(2))
    rec = placed.runtime.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED and rec.compensated == []
    sent = [t.attempt for t in placed.runtime.history(saga_id)
            if t.event == "action_sent" and t.step == "issue_tickets"]
    assert sent == [1, 2, 3, 4, 5]  # past max_attempts=1: retriable steps do not give up
    assert ray.get(actors["payment"].balance.remote())["net_cents"] == rec.input["amount_cents"]
