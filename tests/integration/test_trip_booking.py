"""The second example: a saga with a pivot, on Ray."""

from __future__ import annotations

import time

import pytest
import ray
from pydantic import BaseModel

from examples.trip_booking import PARTICIPANTS, TRIP_BOOKING, sample_input
from saga_actors import (
    Participant,
    RetryPolicy,
    Saga,
    SagaStatus,
    Step,
    StepContext,
    StepKind,
    action,
    compensation,
)
from saga_actors.testing import Fault
from tests.conftest import poll

pytestmark = pytest.mark.ray


def deploy(harness, **faults):
    """The trip's participants (started once per module), each with exactly ``faults``."""
    harness.runtime.register(TRIP_BOOKING)
    return harness.deploy_many(PARTICIPANTS, **{p.name: faults.get(p.name, {})
                                                for p in PARTICIPANTS})


def test_failure_before_the_pivot_cancels_the_holds(shared):
    actors = deploy(shared, payment={"capture_payment": Fault(fail=True)})
    saga_id = shared.start("trip_booking", sample_input(1))
    rec = shared.runtime.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["book_hotel", "book_flight"]
    assert ray.get(actors["payment"].ledger.remote(saga_id)) == []  # nothing captured


def test_after_the_pivot_a_flaky_step_is_retried_until_it_succeeds(shared):
    actors = deploy(shared, airline={
        "issue_tickets": Fault(fail=True, retryable=True, times=4)})
    money = ray.get(actors["payment"].balance.remote())["net_cents"]
    saga_id = shared.start("trip_booking", sample_input(2))
    rec = shared.runtime.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED and rec.compensated == []
    sent = [t.attempt for t in shared.runtime.history(saga_id)
            if t.event == "action_sent" and t.step == "issue_tickets"]
    assert sent == [1, 2, 3, 4, 5]  # past max_attempts=1: retriable steps do not give up
    paid = ray.get(actors["payment"].balance.remote())["net_cents"] - money
    assert paid == rec.input["amount_cents"]


class Till(Participant):
    """Holds and captures; capture_blocking blocks its event loop, so a cancel cannot stop
    it: the caller times out, and the capture applies all the same."""

    name = "till"

    @action
    def hold(self, ctx: StepContext) -> dict:
        return {"held": True}

    @compensation("hold")
    def unhold(self, ctx: StepContext) -> dict:
        return {}

    @action
    def capture(self, ctx: StepContext) -> dict:
        return {"captured": True}

    @action
    def capture_blocking(self, ctx: StepContext) -> dict:
        time.sleep(1.0)
        return {"captured": True}


class TillInput(BaseModel):
    n: int


def pivot_saga(name: str, capture: str) -> Saga:
    once = RetryPolicy(max_attempts=1)
    return Saga(name=name, input_model=TillInput, placement="hosted", steps=[
        Step(name="hold", participant="till", compensation="unhold"),
        Step(name="capture", participant="till", action=capture, kind=StepKind.PIVOT,
             timeout_s=0.3, retry=once),
    ])


def test_a_pivot_whose_reply_was_lost_is_settled_by_its_participant(make_harness):
    h = make_harness(placement="hosted")
    till = h.deploy(Till, faults={"capture": Fault(delay_s=30)})
    applied = pivot_saga("till_applied", "capture_blocking")  # applies after the timeout
    never = pivot_saga("till_never", "capture")  # still waiting when the timeout cancels it
    a = h.start(applied, {"n": 1})
    b = h.start(never, {"n": 2})
    ra, rb = h.runtime.wait_all([a, b], timeout_s=60)
    # it happened: past the point of no return, the saga went forward
    assert ra.status is SagaStatus.COMPLETED and ra.compensated == []
    # it did not, and now never will: the saga compensated, the capture is fenced
    assert rb.status is SagaStatus.FAILED and rb.compensated == ["hold"]
    events = {i: [(t.event, t.detail) for t in h.runtime.history(i) if t.event == "pivot_settled"]
              for i in (a, b)}
    assert events == {a: [("pivot_settled", {"applied": True})],
                      b: [("pivot_settled", {"applied": False})]}
    ledger = sorted((e["saga_id"], e["method"]) for e in ray.get(till.ledger.remote()))
    assert ledger == [(a, "capture_blocking"), (a, "hold"), (b, "hold"), (b, "unhold")]
    poll(lambda: ray.get(till.busy_keys.remote()) == [], what="the fenced call to end")
