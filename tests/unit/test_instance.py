"""The saga state machine, driven by fake participants and a fake clock. No Ray."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest
from loguru import logger
from pydantic import BaseModel, SecretStr

from saga_actors import (
    RetryPolicy,
    Saga,
    SagaConflictError,
    SagaInputError,
    SagaStatus,
    Step,
    StepKind,
)
from saga_actors.engine.admission import admit, build_record
from saga_actors.engine.orchestration import SagaInstance
from saga_actors.errors import StepTimeoutError
from saga_actors.journal import open_journal
from saga_actors.model.records import SagaRecord
from tests.fakes import FakeClock, FakeGateway, died, fail, ok, timeout
from tests.sagas import FAST, ORDER, TRIP, Charge


def timeout_fence() -> dict:
    raise StepTimeoutError("s1", "capture", 0, 1.0)


class Crash(BaseException):
    """The process died."""


class Harness:
    """A saga, its journal, a scripted gateway and a fake clock."""

    def __init__(self, saga: Saga = ORDER, script=None, *, deadline_s: float | None = None):
        if deadline_s is not None:
            saga = saga.model_copy(update={"deadline_s": deadline_s})
        self.saga = saga
        self.journal = open_journal(f"memory://{uuid.uuid4().hex}")
        self.clock = FakeClock()
        self.gateway = FakeGateway(script)
        self.saga_id = "s1"
        record = build_record(self.saga, self.saga_id, {"order_id": "o1", "amount": 5},
                              now=self.clock.now())
        admit(self.journal, record)

    def instance(self) -> SagaInstance:
        """A fresh instance from the journal, as after a process restart."""
        return SagaInstance(self.saga, self.journal.load(self.saga_id), self.journal,
                            self.gateway, clock=self.clock, rng=random.Random(1))

    def run(self):
        return asyncio.run(self.instance().run())

    def crash_at(self, step: str, kind: str = "action") -> None:
        """Run until the process 'dies' with ``step``'s ``kind`` call in flight."""
        def crash(req):
            if req.step == step and req.kind == kind:
                raise Crash

        self.gateway.on_call = crash
        with pytest.raises(Crash):
            self.run()
        self.gateway.on_call = None

    def cancel_mid_call(self, step: str, reason: str) -> SagaRecord:
        """Run, and ask for a cancel while ``step``'s action call is in flight."""
        inst = self.instance()
        gate = asyncio.Event()

        async def slow_call(participant, request, timeout_s):
            self.gateway.calls.append(request)
            if request.step == step and request.kind == "action":
                gate.set()
                await asyncio.sleep(3600)
            return await FakeGateway().call(participant, request, timeout_s)

        async def scenario():
            self.gateway.call = slow_call
            task = asyncio.create_task(inst.run())
            await gate.wait()
            assert await inst.request_cancel(reason)
            return await task

        return asyncio.run(scenario())

    def events(self) -> list[tuple[str, str | None]]:
        return [(t.event, t.step) for t in self.journal.history(self.saga_id)]


def test_happy_path_runs_steps_in_order_and_merges_outputs():
    h = Harness(script={("reserve", "action"): [ok({"reservation": "r1"})],
                        ("pay", "action"): [ok({"charge_id": "c1"})]})
    rec = h.run()
    assert rec.status is SagaStatus.COMPLETED
    assert rec.completed == ["reserve", "pay", "ship"] and rec.compensated == []
    assert h.gateway.called() == [("reserve", "action", 1), ("pay", "action", 1),
                                  ("ship", "action", 1)]
    # each step sees the input plus the outputs before it
    ship_req = h.gateway.calls[2]
    assert ship_req.data == {"order_id": "o1", "amount": 5, "reservation": "r1", "charge_id": "c1"}
    assert h.events()[-1] == ("saga_completed", None)


def test_every_call_is_journaled_before_it_is_sent():
    h = Harness()
    seen = []

    def check(req):
        rec = h.journal.load(h.saga_id)
        seen.append((rec.current_step, rec.phase, rec.attempt, rec.in_flight))

    h.gateway.on_call = check
    h.run()
    assert seen == [("reserve", "action", 1, True), ("pay", "action", 1, True),
                    ("ship", "action", 1, True)]


def test_final_failure_compensates_completed_steps_in_reverse_order():
    h = Harness(script={("ship", "action"): [fail(retryable=False)],
                        ("pay", "action"): [ok({"charge_id": "c9"})]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["pay", "reserve"]
    assert "step 'ship' failed" in rec.error
    comps = [c for c in h.gateway.calls if c.kind == "compensation"]
    assert [c.step for c in comps] == ["pay", "reserve"]
    assert comps[0].action_output == {"charge_id": "c9"}  # a compensation sees its action's output
    assert ("ship", "action", 2) not in h.gateway.called()  # non-retryable: no second attempt


def test_retries_with_backoff_then_succeeds():
    h = Harness(script={("pay", "action"): [fail(), fail(), ok()]})
    rec = h.run()
    assert rec.status is SagaStatus.COMPLETED
    assert [a for s, k, a in h.gateway.called() if s == "pay"] == [1, 2, 3]
    assert h.clock.sleeps == pytest.approx([0.1, 0.2])


def test_retry_budget_exhausted_fails_the_saga():
    h = Harness(script={("pay", "action"): [fail()]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED
    assert [a for s, k, a in h.gateway.called("action") if s == "pay"] == [1, 2, 3]
    assert rec.compensated == ["reserve"]  # pay's failure was definite: nothing to undo


def test_error_types_listed_as_non_retryable_stop_at_once():
    saga = ORDER.model_copy(update={"steps": (
        ORDER.steps[0],
        Step(name="pay", participant="pay", compensation="refund",
             retry=RetryPolicy(max_attempts=5, non_retryable=("CardDeclined",))),
    )})
    h = Harness(saga, script={("pay", "action"): [fail("CardDeclined")]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED
    assert [a for s, k, a in h.gateway.called("action") if s == "pay"] == [1]


def test_timeouts_are_retried_and_an_uncertain_step_is_compensated_too():
    h = Harness(script={("pay", "action"): [timeout()]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED
    # the payment may have happened before the timeout: undo it as well, newest first
    assert rec.compensated == ["pay", "reserve"]
    assert rec.uncertain == ["pay"]


def test_a_timeout_then_success_is_not_compensated_twice():
    h = Harness(script={("reserve", "action"): [timeout(), ok()],
                        ("ship", "action"): [fail(retryable=False)]})
    rec = h.run()
    assert rec.compensated == ["pay", "reserve"]


def test_participant_death_is_outcome_unknown_and_resent_with_the_same_key():
    h = Harness(script={("pay", "action"): [died(), ok()]})
    rec = h.run()
    assert rec.status is SagaStatus.COMPLETED
    keys = [c.key for c in h.gateway.calls if c.step == "pay"]
    assert keys == ["s1/pay/action", "s1/pay/action"]


def test_compensation_failure_past_its_budget_is_stuck():
    h = Harness(script={("ship", "action"): [fail(retryable=False)],
                        ("reserve", "compensation"): [fail()]})
    rec = h.run()
    assert rec.status is SagaStatus.STUCK and rec.stuck_from is SagaStatus.COMPENSATING
    assert rec.compensated == ["pay"] and rec.to_compensate == ["reserve"]
    assert "compensation of 'reserve' failed" in rec.error
    undos = [c for c in h.gateway.calls if c.kind == "compensation" and c.step == "reserve"]
    assert len(undos) == 3


def test_a_non_retryable_compensation_failure_is_stuck_at_once():
    h = Harness(script={("ship", "action"): [fail(retryable=False)],
                        ("pay", "compensation"): [fail(retryable=False)]})
    rec = h.run()
    assert rec.status is SagaStatus.STUCK
    assert len([c for c in h.gateway.calls if c.kind == "compensation"]) == 1


def test_failure_before_the_pivot_compensates():
    h = Harness(TRIP, script={("capture", "action"): [fail(retryable=False)]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["hold"]


def test_a_pivot_that_timed_out_but_applied_is_settled_and_goes_forward():
    h = Harness(TRIP, script={("capture", "action"): [timeout()]})
    h.gateway.fences["capture"] = [lambda: {"applied": True, "output": {"charge_id": "c9"}}]
    rec = h.run()
    assert rec.status is SagaStatus.COMPLETED and rec.compensated == []
    assert rec.outputs["capture"] == {"charge_id": "c9"} and rec.uncertain == []
    assert ("pivot_settled", "capture") in h.events()
    assert h.gateway.fenced == ["capture"]


def test_a_pivot_that_timed_out_and_never_applied_is_fenced_and_compensated():
    h = Harness(TRIP, script={("capture", "action"): [timeout()]})  # default fence: not applied
    rec = h.run()
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["hold"]
    settled = [t for t in h.journal.history(h.saga_id) if t.event == "pivot_settled"]
    assert [t.detail for t in settled] == [{"applied": False}]


def test_a_pivot_whose_outcome_cannot_be_learned_is_stuck_not_failed():
    h = Harness(TRIP, script={("capture", "action"): [died()]})
    h.gateway.fences["capture"] = [timeout_fence]
    rec = h.run()
    assert rec.status is SagaStatus.STUCK and rec.stuck_from is SagaStatus.PENDING
    assert "pivot 'capture': outcome unknown" in rec.error
    assert len(h.gateway.fenced) == TRIP.step("capture").compensation_retry.max_attempts
    assert rec.compensated == []  # nothing undone while the pivot may have happened


def test_a_cancel_mid_pivot_that_applied_goes_forward():
    h = Harness(TRIP)
    h.gateway.fences["capture"] = [lambda: {"applied": True, "output": {}}]
    rec = h.cancel_mid_call("capture", "customer called")
    assert rec.status is SagaStatus.COMPLETED  # past the point of no return after all
    assert rec.completed == ["hold", "capture", "ticket"] and rec.compensated == []


def test_a_pivot_applied_with_an_invalid_output_is_stuck():
    saga = TRIP.model_copy(update={"steps": (
        TRIP.steps[0],
        Step(name="capture", participant="p", kind=StepKind.PIVOT, retry=FAST,
             output_model=Charge),
        TRIP.steps[2],
    )})
    h = Harness(saga, script={("capture", "action"): [ok({"wrong": 1})]})
    h.gateway.fences["capture"] = [lambda: {"applied": True, "output": {"wrong": 1}}]
    rec = h.run()
    assert rec.status is SagaStatus.STUCK
    assert "applied, but its output is invalid" in rec.error and rec.compensated == []


def test_after_the_pivot_retriable_steps_retry_until_they_succeed():
    h = Harness(TRIP, script={("ticket", "action"): [fail()] * 7 + [ok()]})
    rec = h.run()
    assert rec.status is SagaStatus.COMPLETED
    assert len([c for c in h.gateway.calls if c.step == "ticket"]) == 8  # beyond max_attempts=3
    assert not [c for c in h.gateway.calls if c.kind == "compensation"]


@pytest.mark.parametrize("failure", [
    "non_retryable", "invalid_output", "not_json", "restart_budget"])
def test_a_step_after_the_pivot_that_fails_for_good_parks_the_saga_and_undoes_nothing(failure):
    """Regression (acceptance finding 1): after the pivot nothing is compensated; the saga
    is parked STUCK with the reason, and ``retry`` drives it forward again."""
    saga = TRIP.model_copy(update={"steps": (
        *TRIP.steps[:2],
        Step(name="ticket", participant="a", kind=StepKind.RETRIABLE, retry=FAST,
             output_model=Charge),
    )})
    bad = {"non_retryable": fail("NonRetryableError", retryable=False),
           "invalid_output": ok({"wrong": 1}),
           "not_json": ok({"charge_id": "c", "x": float("nan")}),
           "restart_budget": None}[failure]
    h = Harness(saga, script={("ticket", "action"): [bad] if bad else []})
    if failure == "restart_budget":  # the supervisor gave up restarting it mid-ticket
        h.crash_at("ticket")
        from saga_actors.engine.restarts import count_restart
        rec = h.journal.load(h.saga_id)
        assert asyncio.run(count_restart(h.journal, rec, what="lost", event="actor_restarted",
                                         why="x", budget=0, backoff=FAST,
                                         now=h.clock.now())) is None
        rec = h.journal.load(h.saga_id)
    else:
        rec = h.run()
    assert rec.status is SagaStatus.STUCK, rec
    assert rec.compensated == [] and rec.to_compensate == []
    assert not [c for c in h.gateway.calls if c.kind == "compensation"]
    assert rec.completed == ["hold", "capture"] and rec.stuck_from is SagaStatus.PENDING
    if failure != "restart_budget":
        assert "past the pivot 'capture'" in rec.error
    # an operator fixes the cause and retries: the saga goes forward, still undoing nothing
    from saga_actors.services.supervisor import Supervisor
    h.gateway.script[("ticket", "action")] = [ok({"charge_id": "c2"})]
    asyncio.run(Supervisor(h.journal, fleet=None, clock=h.clock).retry(h.saga_id))
    rec = h.run()
    assert rec.status is SagaStatus.COMPLETED and rec.compensated == []


def test_resume_after_crash_resends_the_in_flight_step_with_the_same_attempt():
    h = Harness()
    h.crash_at("pay")  # the process died with the call in flight
    rec = h.journal.load(h.saga_id)
    assert (rec.current_step, rec.attempt, rec.in_flight) == ("pay", 1, True)

    h.gateway.calls.clear()
    rec = h.run()  # a new instance from the journal
    assert rec.status is SagaStatus.COMPLETED
    resumed = [t for t in h.journal.history(h.saga_id) if t.event == "resumed"]
    assert len(resumed) == 1 and resumed[0].detail == {"in_flight": True}
    assert h.gateway.called() == [("pay", "action", 1), ("ship", "action", 1)]
    assert h.gateway.calls[0].key == "s1/pay/action"


def test_a_step_in_flight_at_a_crash_is_compensated_when_the_deadline_passed_meanwhile():
    h = Harness(deadline_s=60)
    h.crash_at("pay")
    h.clock.t += 120  # back after the deadline: the payment may have happened
    rec = h.run()
    assert rec.status is SagaStatus.FAILED and "deadline" in rec.error
    assert rec.compensated == ["pay", "reserve"]


def test_a_pivot_in_flight_at_a_crash_is_settled_when_the_deadline_passed_meanwhile():
    h = Harness(TRIP, deadline_s=60)
    h.crash_at("capture")
    h.gateway.fences["capture"] = [lambda: {"applied": True, "output": {}}]
    h.clock.t += 120
    rec = h.run()
    assert h.gateway.fenced == ["capture"]
    assert rec.status is SagaStatus.COMPLETED and rec.compensated == []


def test_a_pivot_that_timed_out_before_the_deadline_is_settled_not_assumed_undone():
    h = Harness(TRIP, deadline_s=0.05, script={("capture", "action"): [timeout()]})
    h.gateway.fences["capture"] = [lambda: {"applied": True, "output": {}}]
    rec = h.run()  # capture times out, backs off past the deadline: it may have happened
    assert h.gateway.fenced == ["capture"]
    assert rec.status is SagaStatus.COMPLETED and rec.compensated == []


def test_resume_mid_compensation_continues_where_it_stopped():
    h = Harness(script={("ship", "action"): [fail(retryable=False)]})
    h.crash_at("reserve", "compensation")
    h.gateway.calls.clear()
    rec = h.run()
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["pay", "reserve"]
    assert h.gateway.called() == [("reserve", "compensation", 1)]


def test_deadline_aborts_and_compensates_with_the_deadline_as_reason():
    h = Harness(deadline_s=0.25, script={("pay", "action"): [fail()]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED
    assert "deadline of 0.25s exceeded" in rec.error
    assert rec.compensated == ["reserve"]


def test_cancel_mid_call_stops_the_call_and_compensates_the_uncertain_step():
    h = Harness()
    rec = h.cancel_mid_call("pay", "customer changed their mind")
    assert rec.status is SagaStatus.FAILED
    assert rec.error.startswith("cancelled: customer changed their mind")
    assert rec.compensated == ["pay", "reserve"]


def test_cancel_is_refused_after_the_pivot():
    """Cancelled while the step after the pivot is in flight: refused, nothing undone."""
    h = Harness(TRIP)
    inst = h.instance()
    refused: list[bool] = []

    async def scenario():
        gate = asyncio.Event()
        release = asyncio.Event()
        real = h.gateway.call

        async def slow(participant, request, timeout_s):
            if request.step == "ticket":
                gate.set()
                await release.wait()
            return await real(participant, request, timeout_s)

        h.gateway.call = slow
        task = asyncio.create_task(inst.run())
        await gate.wait()
        refused.append(await inst.request_cancel("too late"))
        refused.append(await inst.cancel("too late"))  # and why, for the operator
        release.set()
        return await task

    rec = asyncio.run(scenario())
    pivot = next(s.name for s in TRIP.steps if s.kind is StepKind.PIVOT)
    assert refused == [False, f"it is past its pivot {pivot!r} (it can only go forward)"]
    assert asyncio.run(inst.cancel("again")) == "it is already COMPLETED"
    assert rec.status is SagaStatus.COMPLETED and rec.compensated == []


def test_asking_to_cancel_twice_is_safe():
    h = Harness()
    inst = h.instance()

    async def twice():
        return [await inst.request_cancel("first"), await inst.request_cancel("second")]

    assert asyncio.run(twice()) == [True, True]
    assert [t.event for t in h.journal.history(h.saga_id)].count("cancel_requested") == 1
    rec = asyncio.run(inst.run())
    assert rec.status is SagaStatus.FAILED and "cancelled: first" in rec.error


def test_invalid_output_is_undone():
    saga = ORDER.model_copy(update={"steps": (
        ORDER.steps[0],
        Step(name="pay", participant="pay", compensation="refund", output_model=Charge),
    )})
    h = Harness(saga, script={("pay", "action"): [ok({"wrong": 1})]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED
    assert "invalid output" in rec.error and "charge_id" in rec.error
    assert rec.compensated == ["pay", "reserve"]  # it applied: compensate it


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_in_inputs_and_outputs(value):
    """Regression (acceptance finding 4): NaN was journaled as null, so the same start
    later conflicted with itself. Now refused before anything is journaled."""
    class Reading(BaseModel):
        order_id: str
        amount: int
        rate: float

    saga = ORDER.model_copy(update={"input_model": Reading})
    with pytest.raises(SagaInputError, match="NaN and Infinity have no JSON form"):
        build_record(saga, "s9", {"order_id": "o", "amount": 1, "rate": value}, now=0.0)
    h = Harness(script={("pay", "action"): [ok({"rate": value})]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED and "NaN and Infinity" in rec.error
    assert rec.compensated == ["pay", "reserve"]


def test_an_output_that_would_overwrite_the_saga_data_is_undone():
    """Outputs are merged into ctx.data: a key that is already there (from the input or an
    earlier step) is an invalid output, not a silent overwrite."""
    h = Harness(script={("pay", "action"): [ok({"amount": 1})]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED and "['amount'] would overwrite" in rec.error
    assert rec.data["amount"] == 5 and rec.compensated == ["pay", "reserve"]


def test_log_lines_carry_saga_step_and_attempt():
    h = Harness(script={("pay", "action"): [fail(), ok()]})
    lines = []
    sink = logger.add(lambda m: lines.append(m.record["extra"]), level="WARNING")
    try:
        h.run()
    finally:
        logger.remove(sink)
    assert {"saga_id": "s1", "saga_type": "order", "step": "pay", "attempt": 1,
            "kind": "action"}.items() <= lines[0].items()


def test_bad_input_is_refused_before_anything_is_journaled():
    """Admission as the runtime does it (build, then admit) on a journal that holds a saga:
    a bad input raises at build and the journal is exactly as it was."""
    h = Harness()
    before = (h.journal.query(), h.journal.history(h.saga_id))
    for bad in ({"order_id": "o"}, {"order_id": "o", "amount": "lots"}, ["not", "a", "dict"],
                {"order_id": "o", "amount": float("nan")}):
        with pytest.raises(SagaInputError):
            admit(h.journal, build_record(ORDER, "x", bad, now=h.clock.now()))
    assert h.journal.load("x") is None
    assert (h.journal.query(), h.journal.history(h.saga_id)) == before


def test_admit_returns_the_existing_saga_and_refuses_a_conflicting_one():
    h = Harness()
    again = build_record(ORDER, h.saga_id, {"order_id": "o1", "amount": 5}, now=h.clock.now())
    assert admit(h.journal, again).saga_id == h.saga_id
    assert len(h.journal.history(h.saga_id)) == 1
    other = build_record(ORDER, h.saga_id, {"order_id": "o1", "amount": 6}, now=h.clock.now())
    with pytest.raises(SagaConflictError, match="different input"):
        admit(h.journal, other)


class Card(BaseModel):
    order_id: str
    amount: int
    card_number: SecretStr


def test_secret_inputs_reach_participants_but_not_the_registry_views_or_logs():
    from saga_actors.services.registry import RegistryEntry, describe

    saga = ORDER.model_copy(update={"name": "card_order", "input_model": Card})
    journal = open_journal(f"memory://{uuid.uuid4().hex}")
    record = build_record(saga, "c1", {"order_id": "o", "amount": 5,
                                       "card_number": "4111-1111"}, now=0)
    admit(journal, record)
    lines = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    gateway = FakeGateway({("ship", "action"): [fail(retryable=False)]})
    try:
        asyncio.run(SagaInstance(saga, journal.load("c1"), journal, gateway,
                                 clock=FakeClock()).run())
    finally:
        logger.remove(sink)
    assert journal.load("c1").input["card_number"] == "4111-1111"  # recovery needs it
    assert gateway.calls[0].data["card_number"] == "4111-1111"    # the participant needs it
    shown = json.dumps(describe(journal.load("c1"), journal.history("c1"), hosts=2))
    entry = RegistryEntry.of(journal.load("c1")).model_dump_json()
    assert "4111" not in shown and "4111" not in entry and "4111" not in "".join(lines)


def test_cancelling_the_instance_itself_stops_it_even_past_its_deadline():
    h = Harness(deadline_s=1)
    inst = h.instance()
    started = asyncio.Event()

    async def slow(participant, request, timeout_s):
        started.set()
        await asyncio.sleep(3600)

    h.gateway.call = slow

    async def scenario():
        task = asyncio.ensure_future(inst.run())
        await started.wait()
        h.clock.t += 5  # past the deadline, so an abort reason exists
        task.cancel()   # e.g. a host restarting a stalled instance
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert h.journal.load(h.saga_id).status is SagaStatus.PENDING  # left for the next instance


def test_a_misspelled_or_mistyped_transition_field_raises_instead_of_being_journaled():
    """A misspelled field always raises (model_copy(update=...) would silently drop it).
    In the test suite (``SAGA_ACTORS_STRICT_RECORDS=1``, set by conftest) every change is
    validated too, and one that only passes by pydantic's coercion (a status given as a
    string) raises: production, which skips that validation, never relies on it."""
    from pydantic import ValidationError

    from saga_actors.engine.transitions import prepare
    from saga_actors.model import records
    from saga_actors.model.events import Event

    assert records.STRICT_RECORDS
    h = Harness()
    rec = h.journal.load(h.saga_id)
    with pytest.raises(TypeError, match=r"no field \['atempt'\]"):
        prepare(rec, Event.ACTION_SENT, now=1.0, atempt=2)
    with pytest.raises(ValidationError, match="attempt"):
        prepare(rec, Event.ACTION_SENT, now=1.0, attempt="second")
    with pytest.raises(ValidationError, match="status"):
        prepare(rec, Event.ACTION_SENT, now=1.0, status="RUNNING")
    with pytest.raises(TypeError, match="status: 'PENDING' is not of its type"):
        prepare(rec, Event.ACTION_SENT, now=1.0, status="PENDING")
    new, transition = prepare(rec, Event.ACTION_SENT, now=1.0, attempt=2,
                              status=SagaStatus.PENDING)
    assert new.attempt == 2 and new.status is SagaStatus.PENDING and rec.attempt == 0
    assert transition.event is Event.ACTION_SENT and transition.seq == rec.seq + 1


def test_every_failure_event_carries_its_error_type():
    h = Harness(script={("pay", "action"): [timeout(), fail("CardDeclined", retryable=False)]})
    rec = h.run()
    assert rec.status is SagaStatus.FAILED
    failures = [(t.event.value, t.detail.get("error_type"))
                for t in h.journal.history(h.saga_id) if "error" in t.detail or
                t.event.value == "compensation_started"]
    assert failures == [("action_attempt_failed", "StepTimeoutError"),
                        ("action_attempt_failed", "CardDeclined"),
                        ("compensation_started", "CardDeclined")]
