"""Parallel groups, child sagas and waits for signals, in the state machine. No Ray.

Outcomes are judged from the participants' own stores (the test kit's real participants)
and from the journal; the gateway is scripted only where a call must hang in flight.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from pydantic import BaseModel

from saga_actors import (
    Child,
    Parallel,
    Participant,
    RetryPolicy,
    Saga,
    SagaDefinitionError,
    SagaFinishedError,
    SagaStatus,
    SignalPayloadError,
    Step,
    StepKind,
    UnknownSignalError,
    Wait,
    action,
    compensation,
)
from saga_actors.engine.admission import admit, build_record
from saga_actors.engine.orchestration import SagaInstance
from saga_actors.journal import open_journal
from saga_actors.testing import SagaTestKit
from tests.fakes import FakeClock, FakeGateway

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.1, max_backoff_s=1, jitter=0)


class Trip(BaseModel):
    trip_id: str
    amount: int


class Approval(BaseModel):
    approved_by: str


class Bookings(Participant):
    name = "bookings"

    @action
    def reserve(self, ctx):
        return {"reservation": f"r-{ctx.saga_id}"}

    @compensation("reserve")
    def release(self, ctx):
        return {}

    @action
    def flight(self, ctx):
        return {"flight_ref": "F1"}

    @compensation("flight")
    def cancel_flight(self, ctx):
        return {}

    @action
    def hotel(self, ctx):
        return {"hotel_ref": "H1"}

    @compensation("hotel")
    def cancel_hotel(self, ctx):
        return {}

    @action
    def car(self, ctx):
        return {"car_ref": "C1"}

    @compensation("car")
    def cancel_car(self, ctx):
        return {}

    @action
    def pay(self, ctx):
        return {"paid": True}

    @action
    def ticket(self, ctx):
        return {"ticket": f"T-{ctx.data['trip_id']}"}

    @compensation("ticket")
    def void_ticket(self, ctx):
        return {}

    @action
    def notify(self, ctx):
        return {}


def _step(name: str, undo: str | None = None, **kw) -> Step:
    return Step(name=name, participant="bookings", compensation=undo, retry=FAST,
                compensation_retry=FAST, **kw)


GROUP = Saga(name="group_trip", input_model=Trip, steps=[
    _step("reserve", "release"),
    Parallel(_step("flight", "cancel_flight"), _step("hotel", "cancel_hotel"),
             _step("car", "cancel_car"), name="bookings"),
    _step("pay", kind=StepKind.PIVOT),
])

TICKET = Saga(name="ticketing", input_model=Trip, steps=[_step("ticket", "void_ticket")])

WITH_CHILD = Saga(name="child_trip", input_model=Trip, steps=[
    _step("reserve", "release"),
    Child("issue", saga=TICKET),
    _step("pay", kind=StepKind.PIVOT),
])

APPROVED = Saga(name="approved_trip", input_model=Trip, steps=[
    _step("reserve", "release"),
    Wait("approval", payload=Approval, timeout_s=30),
    _step("pay", kind=StepKind.PIVOT),
])

TRIP = {"trip_id": "t1", "amount": 5}


def store_effects(kit: SagaTestKit) -> dict[str, int]:
    return kit.effects("bookings")


# --- parallel groups -------------------------------------------------------------------


def test_a_group_runs_its_steps_at_once_and_the_saga_goes_on_after_all_of_them():
    kit = SagaTestKit(GROUP, [Bookings])
    rec = kit.run(TRIP, "g1")
    assert rec.status is SagaStatus.COMPLETED
    assert rec.completed[0] == "reserve" and rec.completed[-1] == "pay"
    assert sorted(rec.completed[1:4]) == ["car", "flight", "hotel"]
    assert rec.data["flight_ref"] == "F1" and rec.data["car_ref"] == "C1"
    assert rec.branches == {} and rec.cursor == 5
    # all three were sent before any of them succeeded
    events = kit.events("g1")
    sent = [i for i, (e, s) in enumerate(events) if e == "action_sent" and s in
            ("flight", "hotel", "car")]
    first_done = min(i for i, (e, s) in enumerate(events) if e == "step_succeeded" and s in
                     ("flight", "hotel", "car"))
    assert len(sent) == 3 and max(sent) < first_done
    assert store_effects(kit) == {"reserve": 1, "flight": 1, "hotel": 1, "car": 1, "pay": 1}


class HangingGateway(FakeGateway):
    """Holds the calls of ``hang`` until they are cancelled."""

    def __init__(self, script=None, hang=()) -> None:
        super().__init__(script)
        self.hang = set(hang)
        self.cancelled: list[str] = []

    async def call(self, participant, request, timeout_s):
        if request.step in self.hang and request.kind == "action":
            self.calls.append(request)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.append(request.step)
                raise
        return await super().call(participant, request, timeout_s)


def _run(saga: Saga, gateway, saga_id="s1", journal=None, clock=None):
    journal = journal or open_journal(f"memory://{uuid.uuid4().hex}")
    clock = clock or FakeClock()
    if journal.load(saga_id) is None:
        admit(journal, build_record(saga, saga_id, TRIP, now=clock.now()))
    inst = SagaInstance(saga, journal.load(saga_id), journal, gateway, clock=clock,
                        rng=random.Random(1))
    return asyncio.run(inst.run()), journal


def test_a_failure_in_a_group_stops_the_steps_in_flight_and_compensates_newest_first():
    from tests.fakes import fail, ok

    gateway = HangingGateway({("hotel", "action"): [fail("SoldOut", retryable=False)],
                              ("car", "action"): [ok({"car_ref": "C1"})]}, hang=["flight"])
    rec, journal = _run(GROUP, gateway)
    assert rec.status is SagaStatus.FAILED
    assert gateway.cancelled == ["flight"]  # stopped, not left running
    # flight's outcome is unknown (stopped mid-call): compensated first, then car (done in
    # the group), then the step before the group; hotel never applied
    assert rec.compensated == ["flight", "car", "reserve"]
    assert "flight" in rec.uncertain and "hotel" not in rec.compensated
    assert "SoldOut" in rec.error


def test_a_crash_mid_group_resumes_each_step_where_it_stood_and_applies_each_once():
    kit = SagaTestKit(GROUP, [Bookings])
    kit.inject("car", crash="sent")
    kit.inject("hotel", crash="replied")
    rec = kit.run(TRIP, "g2")
    assert rec.status is SagaStatus.COMPLETED and kit.crashes == 2
    assert store_effects(kit) == {"reserve": 1, "flight": 1, "hotel": 1, "car": 1, "pay": 1}
    assert sorted(rec.completed) == ["car", "flight", "hotel", "pay", "reserve"]
    resumed = [e for e, _ in kit.events("g2") if e == "resumed"]
    assert len(resumed) == 2


def test_a_cancel_in_a_group_stops_every_step_in_flight_and_compensates_them():
    journal = open_journal(f"memory://{uuid.uuid4().hex}")
    clock = FakeClock()
    gateway = HangingGateway(hang=["flight", "hotel", "car"])
    admit(journal, build_record(GROUP, "c1", TRIP, now=clock.now()))
    inst = SagaInstance(GROUP, journal.load("c1"), journal, gateway, clock=clock)

    async def scenario():
        task = asyncio.create_task(inst.run())
        while len(gateway.calls) < 4:  # reserve, then the three of the group
            await asyncio.sleep(0)
        assert await inst.request_cancel("customer changed plans")
        return await task

    rec = asyncio.run(scenario())
    assert rec.status is SagaStatus.FAILED
    assert sorted(gateway.cancelled) == ["car", "flight", "hotel"]
    assert sorted(rec.compensated[:3]) == ["car", "flight", "hotel"]
    assert rec.compensated[3] == "reserve"


def test_bad_groups_are_refused_when_defined():
    with pytest.raises(SagaDefinitionError, match="pivot 'pay' cannot run in a parallel"):
        Parallel(_step("flight", "cancel_flight"), _step("pay", kind=StepKind.PIVOT))
    with pytest.raises(SagaDefinitionError, match="at least two steps"):
        Parallel(_step("flight", "cancel_flight"))
    with pytest.raises(SagaDefinitionError, match="groups do not nest"):
        Parallel(_step("a", "x"), Parallel(_step("b", "y"), _step("c", "z")))
    with pytest.raises(SagaDefinitionError, match="duplicate step name"):
        Saga(name="dup", input_model=Trip, steps=[
            _step("flight", "cancel_flight"),
            Parallel(_step("flight", "cancel_flight"), _step("hotel", "cancel_hotel"))])


# --- child sagas -------------------------------------------------------------------------


def test_a_child_saga_runs_under_its_own_id_and_its_output_is_the_steps_output():
    kit = SagaTestKit(WITH_CHILD, [Bookings], children=[TICKET])
    rec = kit.run(TRIP, "p1")
    assert rec.status is SagaStatus.COMPLETED
    assert rec.data["ticket"] == "T-t1" and rec.outputs["issue"] == {"ticket": "T-t1"}
    child = kit.journal.load("p1/issue")
    assert child.status is SagaStatus.COMPLETED and child.parent_id == "p1"
    assert ("child_started", "issue") in kit.events("p1")
    assert store_effects(kit) == {"reserve": 1, "ticket": 1, "pay": 1}


def test_a_child_that_fails_fails_the_step_and_the_parent_compensates():
    kit = SagaTestKit(WITH_CHILD, [Bookings], children=[TICKET])
    kit.inject("ticket", fail=True)
    rec = kit.run(TRIP, "p2")
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["reserve"]
    assert "child saga p2/issue FAILED" in rec.error
    assert kit.journal.load("p2/issue").status is SagaStatus.FAILED
    assert store_effects(kit) == {"reserve": 1, "release": 1}


def test_a_completed_child_is_undone_by_its_parent_and_its_history_says_so():
    kit = SagaTestKit(WITH_CHILD, [Bookings], children=[TICKET])
    kit.inject("pay", fail=True)
    rec = kit.run(TRIP, "p3")
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["issue", "reserve"]
    child = kit.journal.load("p3/issue")
    assert child.status is SagaStatus.FAILED and child.compensated == ["ticket"]
    assert child.error.startswith("undone: its parent p3 compensates step 'issue'")
    events = [e for e, _ in kit.events("p3/issue")]
    after = events[events.index("saga_completed") + 1:]
    assert after == ["compensation_started", "resumed", "compensation_sent",
                     "step_compensated", "saga_failed"]
    assert store_effects(kit) == {"reserve": 1, "release": 1, "ticket": 1, "void_ticket": 1}


def test_a_crash_inside_a_child_resumes_the_child_through_its_parent():
    kit = SagaTestKit(WITH_CHILD, [Bookings], children=[TICKET])
    kit.inject("ticket", crash="replied")
    rec = kit.run(TRIP, "p4")
    assert rec.status is SagaStatus.COMPLETED and kit.crashes == 1
    assert store_effects(kit) == {"reserve": 1, "ticket": 1, "pay": 1}
    assert [e for e, _ in kit.events("p4/issue")].count("saga_started") == 1


def test_child_steps_are_checked_when_defined():
    with pytest.raises(SagaDefinitionError, match="cannot be the pivot"):
        Child("issue", saga=TICKET, kind=StepKind.PIVOT)
    with pytest.raises(SagaDefinitionError, match="exactly one of participant, child"):
        Step(name="x", participant="bookings", child="ticketing")


# --- waiting for a signal -----------------------------------------------------------------


def test_a_signal_sent_before_the_wait_is_kept_and_taken():
    kit = SagaTestKit(APPROVED, [Bookings])
    rec = kit.run(TRIP, "w1", signals={"approval": {"approved_by": "ann"}})
    assert rec.status is SagaStatus.COMPLETED
    assert rec.data["approved_by"] == "ann" and len(rec.signals_taken) == 1
    assert ("wait_started", "approval") in kit.events("w1")
    assert store_effects(kit) == {"reserve": 1, "pay": 1}


def test_a_duplicate_signal_is_kept_once():
    kit = SagaTestKit(APPROVED, [Bookings])
    admit(kit.journal, build_record(APPROVED, "w2", TRIP, now=kit.clock.now()))
    first = kit.signal("w2", "approval", {"approved_by": "ann"}, signal_id="sig-1")
    again = kit.signal("w2", "approval", {"approved_by": "ann"}, signal_id="sig-1")
    assert first == again == "sig-1" and len(kit.journal.signals("w2")) == 1


def test_a_wait_past_its_timeout_fails_the_step_and_the_saga_compensates():
    kit = SagaTestKit(APPROVED, [Bookings])
    rec = kit.run(TRIP, "w3")
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["reserve"]
    assert "no 'approval' signal came within 30s" in rec.error
    assert store_effects(kit) == {"reserve": 1, "release": 1}


def test_bad_signals_are_refused_and_nothing_is_journaled():
    kit = SagaTestKit(APPROVED, [Bookings])
    admit(kit.journal, build_record(APPROVED, "w4", TRIP, now=kit.clock.now()))
    with pytest.raises(UnknownSignalError, match="no wait step of 'approved_trip' takes it"):
        kit.signal("w4", "refund", {})
    with pytest.raises(SignalPayloadError, match="approved_by"):
        kit.signal("w4", "approval", {"approved": True})
    assert kit.journal.signals("w4") == []
    kit.signal("w4", "approval", {"approved_by": "ann"})
    rec = kit.run(TRIP, "w5", signals={"approval": {"approved_by": "bob"}})
    assert rec.status is SagaStatus.COMPLETED
    with pytest.raises(SagaFinishedError, match="w5 is COMPLETED"):
        kit.signal("w5", "approval", {"approved_by": "bob"})
    assert len(kit.journal.signals("w5")) == 1


def test_wait_steps_are_checked_when_defined():
    with pytest.raises(SagaDefinitionError, match="same signal"):
        Saga(name="two", input_model=Trip, steps=[
            Wait("a", signal="go", payload=Approval, timeout_s=1),
            Wait("b", signal="go", payload=Approval, timeout_s=1)])
    with pytest.raises(SagaDefinitionError, match="cannot be the pivot"):
        Wait("a", payload=Approval, timeout_s=1, kind=StepKind.PIVOT)
