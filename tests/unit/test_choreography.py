"""Choreographed sagas without Ray: the flow graph checks, and the bus's delivery driven by
a scripted gateway and a fake clock."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import BaseModel

from saga_actors import Choreography, Reaction, RetryPolicy, SagaDefinitionError, SagaStatus
from saga_actors.engine.admission import admit, build_record
from saga_actors.engine.choreography import ChoreographyInstance, event_id, track
from saga_actors.errors import StepTimeoutError
from saga_actors.journal import open_journal
from tests.fakes import FakeClock, FakeGateway, died, fail, ok


class Ordered(BaseModel):
    n: int


class Reserved(Ordered):
    reserve_done: bool


class Charged(Reserved):
    charge_done: bool


class Failure(BaseModel):
    step: str
    error: str


class ChargeFailed(Reserved):
    failure: Failure


class ChargeTimedOut(Reserved):
    failure: Failure


class Released(Ordered):
    release: bool = True


FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.1, jitter=0)


def flow(*, timeout_s: float | None = None) -> Choreography:
    """reserve -> charge; a failed charge releases the reservation; with ``timeout_s``, a
    charge that leads to nothing in time publishes ChargeTimedOut, which releases too."""
    charge = {"deadline_s": timeout_s, "timeout_event": "ChargeTimedOut"} if timeout_s else {}
    late = (Reaction(name="release_late", on="ChargeTimedOut", participant="inv",
                     handler="unreserve", compensates="reserve", publishes="Released",
                     retry=FAST),) if timeout_s else ()
    return Choreography(
        name="shop", events=(Ordered, Reserved, Charged, ChargeFailed, Released,
                             *((ChargeTimedOut,) if timeout_s else ())),
        start="Ordered",
        reactions=(
            Reaction(on="Ordered", participant="inv", handler="reserve", publishes="Reserved",
                     retry=FAST),
            Reaction(on="Reserved", participant="pay", handler="charge", publishes="Charged",
                     failure="ChargeFailed", retry=FAST, **charge),
            Reaction(name="release", on="ChargeFailed", participant="inv",
                     handler="unreserve", compensates="reserve", publishes="Released",
                     retry=FAST),
            *late,
        ),
        completes_on=("Charged",), fails_on=("Released",))


def shop_without_timeouts() -> Choreography:
    return flow()


class Bus:
    """One choreographed saga, its journal, a scripted gateway and a fake clock."""

    def __init__(self, c: Choreography, script=None) -> None:
        self.c = c
        self.journal = open_journal(f"memory://{uuid.uuid4().hex}")
        self.clock = FakeClock()
        # (the fake's default output for the compensation, reserve_done, is taken already)
        self.gateway = FakeGateway({("reserve", "compensation"): [ok({"release": True})],
                                    **(script or {})})
        admit(self.journal, build_record(c, "s1", {"n": 1}, now=self.clock.now()))

    def run(self):
        inst = ChoreographyInstance(self.c, self.journal.load("s1"), self.journal, self.gateway,
                                    clock=self.clock)
        return asyncio.run(inst.run())


# --- the graph ----------------------------------------------------------------------


def test_a_valid_flow_and_what_each_broken_graph_says():
    c = shop_without_timeouts()
    assert c.input_model is Ordered and c.reaction_on("Reserved").handler == "charge"
    base = dict(name="x", events=(Ordered, Reserved, Charged, ChargeFailed, Released),
                start="Ordered", completes_on=("Charged",), fails_on=("Released",))
    reserve = Reaction(on="Ordered", participant="inv", handler="reserve", publishes="Reserved")
    charge = Reaction(on="Reserved", participant="pay", handler="charge", publishes="Charged",
                      failure="ChargeFailed")
    release = Reaction(on="ChargeFailed", participant="inv", handler="unreserve",
                       compensates="reserve", publishes="Released")
    cases = [
        ((reserve, charge, release, Reaction(on="Nope", participant="p", handler="h",
                                              publishes="Released")),
         "event 'Nope' is not declared"),
        ((reserve, charge.model_copy(update={"on": "ChargeTimedOut"}), release),
         "'ChargeTimedOut' is consumed by 'charge' but neither the start event nor published"),
        ((reserve, charge), "'ChargeFailed' is published but nothing consumes it"),
        ((reserve, charge, release, release.model_copy(update={"name": "again"})),
         "event 'ChargeFailed' has two compensations of 'reserve'"),
        ((reserve,  # a timeout releases the reservation, a plain failure only notifies
          Reaction(on="Reserved", participant="pay", handler="charge", publishes="Charged",
                   failure="ChargeFailed", deadline_s=1, timeout_event="ChargeTimedOut"),
          Reaction(on="ChargeTimedOut", participant="inv", handler="unreserve",
                   compensates="reserve", publishes="Released"),
          Reaction(on="ChargeFailed", participant="n", handler="notify", publishes="Released")),
         "failure event 'ChargeFailed' .* never leads to a compensation of 'reserve'"),
        ((reserve, charge, release, Reaction(on="Released", participant="p", handler="h",
                                             publishes="Released")),
         "event 'Released' is terminal .* but 'h' reacts to it"),
        ((reserve, charge, release,  # a loop nothing leads into
          Reaction(on="ChargeTimedOut", participant="p", handler="a", publishes="Ordered2"),
          Reaction(on="Ordered2", participant="p", handler="b", publishes="ChargeTimedOut")),
         "reaction 'a' \\(on 'ChargeTimedOut'\\) is unreachable from 'Ordered'"),
        ((reserve, charge.model_copy(update={"publishes": None}), release),
         "reaction 'charge' publishes nothing"),
    ]

    class Ordered2(Ordered):
        pass

    for reactions, message in cases:
        with pytest.raises(SagaDefinitionError, match=message):
            Choreography(reactions=reactions, **{**base, "events": (*base["events"],
                                                                    ChargeTimedOut, Ordered2)})


# --- delivery -----------------------------------------------------------------------


def test_events_are_delivered_in_order_and_the_success_event_completes():
    bus = Bus(shop_without_timeouts())
    rec = bus.run()
    assert rec.status is SagaStatus.COMPLETED and rec.completed == ["reserve", "charge"]
    assert [e.type for e in rec.events] == ["Ordered", "Reserved", "Charged"]
    assert [e.causation_id for e in rec.events] == [None, rec.events[0].id, rec.events[1].id]
    assert rec.events[2].producer == "pay.charge" and rec.awaiting is None
    assert bus.gateway.called() == [("reserve", "action", 1), ("charge", "action", 1)]
    assert track(bus.c, rec.events) is SagaStatus.COMPLETED


def test_a_failure_event_runs_the_compensating_reaction_and_ends_failed():
    bus = Bus(shop_without_timeouts(),
              script={("charge", "action"): [fail("CardDeclined", retryable=False)]})
    rec = bus.run()
    assert rec.status is SagaStatus.FAILED
    assert [e.type for e in rec.events] == ["Ordered", "Reserved", "ChargeFailed", "Released"]
    assert rec.completed == ["reserve"] and rec.compensated == ["reserve"]
    assert rec.events[2].payload["failure"]["error"].startswith("CardDeclined")
    assert bus.gateway.called()[-1] == ("reserve", "compensation", 1)


def test_a_poison_event_parks_its_saga_and_retry_delivers_it_again():
    c = shop_without_timeouts()
    reactions = (c.reactions[0], c.reactions[1].model_copy(update={"failure": None}))
    c = Choreography(name="shop2", events=(Ordered, Reserved, Charged), start="Ordered",
                     reactions=reactions, completes_on=("Charged",))
    bus = Bus(c, script={("charge", "action"): [fail(), fail(), ok({"charge_done": True})]})
    rec = bus.run()
    assert rec.status is SagaStatus.STUCK and "'charge' failed on 'Reserved'" in rec.error
    from saga_actors.services.supervisor import Supervisor

    asyncio.run(Supervisor(bus.journal, fleet=None, clock=bus.clock).retry("s1"))
    rec = bus.run()
    assert rec.status is SagaStatus.COMPLETED and rec.completed == ["reserve", "charge"]


def test_a_late_handler_is_fenced_and_its_timeout_event_compensates():
    def slow(req):
        raise StepTimeoutError(req.saga_id, req.step, req.attempt, 1.0)

    bus = Bus(flow(timeout_s=0.05),
              script={("charge", "action"): [slow]})
    real_call = bus.gateway.call

    async def late(participant, request, timeout_s):
        bus.clock.t += timeout_s  # the attempt used up its time
        return await real_call(participant, request, timeout_s)

    bus.gateway.call = late
    rec = bus.run()
    assert rec.status is SagaStatus.FAILED
    assert [e.type for e in rec.events] == ["Ordered", "Reserved", "ChargeTimedOut", "Released"]
    assert bus.gateway.fenced == ["charge"]  # it never applies after this


def test_a_handler_that_applied_before_its_fence_goes_forward():
    bus = Bus(shop_without_timeouts(), script={("charge", "action"): [died()]})
    bus.gateway.fences["charge"] = [lambda: {"applied": True, "output": {"charge_done": True}}]
    rec = bus.run()
    assert rec.status is SagaStatus.COMPLETED and bus.gateway.fenced == ["charge"]


class Crash(BaseException):
    """The bus process died."""


def test_a_bus_that_dies_mid_delivery_resends_the_same_key_and_publishes_once():
    bus = Bus(shop_without_timeouts())

    def crash(req):
        if req.step == "charge":
            bus.gateway.on_call = None
            raise Crash

    bus.gateway.on_call = crash
    with pytest.raises(Crash):
        bus.run()
    rec = bus.run()  # a new instance from the journal
    assert rec.status is SagaStatus.COMPLETED
    charges = [c for c in bus.gateway.calls if c.step == "charge"]
    assert [(c.attempt, c.key) for c in charges] == [(1, "s1/charge/action")] * 2
    assert [e.type for e in rec.events] == ["Ordered", "Reserved", "Charged"]
    assert rec.events[2].id == event_id("s1", rec.events[1].id, "charge", "Charged")


def test_a_cancel_publishes_the_failure_event_of_the_reaction_under_way():
    bus = Bus(shop_without_timeouts())
    inst = ChoreographyInstance(bus.c, bus.journal.load("s1"), bus.journal, bus.gateway,
                                clock=bus.clock)
    gate = asyncio.Event()
    real = bus.gateway.call

    async def hold(participant, request, timeout_s):
        if request.step == "charge":
            gate.set()
            await asyncio.sleep(3600)
        return await real(participant, request, timeout_s)

    async def scenario():
        bus.gateway.call = hold
        task = asyncio.create_task(inst.run())
        await gate.wait()
        assert await inst.request_cancel("not wanted")
        assert await inst.request_cancel("again")  # safe to repeat
        return await task

    rec = asyncio.run(scenario())
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["reserve"]
    assert rec.events[2].type == "ChargeFailed" and "cancelled: not wanted" in \
        rec.events[2].payload["failure"]["error"]
    assert bus.gateway.fenced == ["charge"]  # the call in flight was settled first



def test_a_handler_that_committed_before_the_bus_died_publishes_its_event_once():
    """The participant committed (its inbox record holds the outcome: the outbox), then
    the bus died before the event reached the log: redelivered with the same key, the
    recorded outcome comes back and the same event (same id) is published, once."""
    bus = Bus(shop_without_timeouts())
    real_write = bus.journal.write

    async def crash_on_publish(record, *transitions):
        if any(t.event == "event_published" and t.detail["event"] == "Charged"
               for t in transitions):
            bus.journal.write = real_write
            raise Crash
        return await real_write(record, *transitions)

    bus.journal.write = crash_on_publish
    with pytest.raises(Crash):
        bus.run()
    assert [e.type for e in bus.journal.load("s1").events] == ["Ordered", "Reserved"]
    rec = bus.run()
    assert rec.status is SagaStatus.COMPLETED
    assert [e.type for e in rec.events] == ["Ordered", "Reserved", "Charged"]
    charges = [c.key for c in bus.gateway.calls if c.step == "charge"]
    assert charges == ["s1/charge/action"] * 2  # redelivered with the same key


def test_the_supervisor_measures_a_choreography_mid_reaction_like_any_saga():
    """The stall limit and the progress check (made for orchestrated parallel groups and
    child steps) take a choreographed saga in the middle of a reaction too."""
    from saga_actors.engine.restarts import stall_limit_s
    from saga_actors.services.supervisor import Supervisor

    c = shop_without_timeouts()
    bus = Bus(c)
    record = bus.journal.load("s1").updated(current_step="charge", phase="action")
    assert stall_limit_s(c, record, 10.0) == c.step("charge").timeout_s + FAST.max_backoff_s + 10
    sup = Supervisor(bus.journal, fleet=None)
    assert sup._progress_at(c, record) == record.updated_at


def test_a_signal_for_a_choreographed_saga_is_refused_and_nothing_kept():
    from saga_actors import UnknownSignalError
    from saga_actors.engine.signals import accept_signal

    bus = Bus(shop_without_timeouts())
    with pytest.raises(UnknownSignalError, match="signals it takes: none"):
        accept_signal(bus.journal, bus.c, bus.journal.load("s1"), "approval", {},
                      signal_id="x", now=0.0, max_bytes=1000)
    assert bus.journal.signals("s1") == []


# --- what show, journal show and the timeline say of its steps --------------------------


def _show_and_picture(bus: Bus) -> tuple[dict, dict]:
    """``show``'s rows by (step, phase) -> outcome, and the timeline's step marks."""
    import xml.etree.ElementTree as ET

    from saga_actors.ops.timeline import render_svg
    from saga_actors.services.registry import describe

    info = describe(bus.journal.load("s1"), bus.journal.history("s1"), hosts=1)
    rows = {(s["step"], s["phase"]): s for s in info["steps"]}
    kinds = {"succeeded": "succeeded", "compensation": "compensated", "failed": "failed",
             "attempt": "in flight"}
    marks = {tuple(g.get("data-step").split("/")): kinds[g.get("class").split()[1]]
             for g in ET.fromstring(render_svg(info)).iter("{http://www.w3.org/2000/svg}g")
             if g.get("data-step")}
    return rows, marks


def test_a_completed_choreography_shows_every_reaction_succeeded_with_its_time():
    bus = Bus(shop_without_timeouts())
    bus.run()
    rows, marks = _show_and_picture(bus)
    assert {k: r["outcome"] for k, r in rows.items()} == {
        ("reserve", "action"): "succeeded", ("charge", "action"): "succeeded"}
    assert all(r["ended_at"] is not None and r["duration_s"] >= 0 and r["attempts"] == 1
               for r in rows.values())
    assert marks == {k: r["outcome"] for k, r in rows.items()}


def test_a_failed_choreography_shows_the_failed_reaction_and_the_compensation_that_ran():
    bus = Bus(shop_without_timeouts(),
              script={("charge", "action"): [fail("CardDeclined", retryable=False)]})
    bus.run()
    rows, marks = _show_and_picture(bus)
    assert {k: r["outcome"] for k, r in rows.items()} == {
        ("reserve", "action"): "succeeded", ("charge", "action"): "failed",
        ("reserve", "compensation"): "compensated"}
    assert all(r["ended_at"] is not None for r in rows.values())
    assert rows[("charge", "action")]["last_error"].startswith("CardDeclined")
    assert marks == {k: r["outcome"] for k, r in rows.items()}


def test_a_choreography_under_way_shows_only_the_reaction_in_flight_as_such():
    bus = Bus(shop_without_timeouts())

    def crash(req):
        if req.step == "charge":  # the bus dies with the charge sent: the journal says so
            raise Crash

    bus.gateway.on_call = crash
    with pytest.raises(Crash):
        bus.run()
    rows, marks = _show_and_picture(bus)
    assert {k: r["outcome"] for k, r in rows.items()} == {
        ("reserve", "action"): "succeeded", ("charge", "action"): "in flight"}
    assert rows[("charge", "action")]["ended_at"] is None
    assert marks == {k: r["outcome"] for k, r in rows.items()}


def test_a_cancel_refused_by_a_choreography_says_why():
    bus = Bus(shop_without_timeouts())  # its first reaction, reserve, declares no failure
    inst = ChoreographyInstance(bus.c, bus.journal.load("s1"), bus.journal, bus.gateway,
                                clock=bus.clock)
    assert asyncio.run(inst.cancel("stop")) == (
        "the reaction under way, 'reserve', declares no failure event (nothing would start "
        "the compensations)")
    assert bus.journal.load("s1").cancel_reason is None  # nothing journaled
    rec = bus.run()
    assert asyncio.run(ChoreographyInstance(bus.c, rec, bus.journal, bus.gateway,
                                            clock=bus.clock).cancel("x")) == \
        "it is already COMPLETED"
