"""Choreography's whole pattern, in the test kit (real participants and stores, a fake
clock, no Ray): fan-out, joins, events from outside, and the graph checks for them."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from pydantic import BaseModel

from examples.order_choreography_parallel import (
    ORDER_CHOREOGRAPHY_PARALLEL,
    PARTICIPANTS,
    capture,
    order_choreography_parallel,
)
from examples.order_fulfillment import sample_input
from saga_actors import (
    Choreography,
    EventPayloadError,
    Reaction,
    SagaDefinitionError,
    SagaFinishedError,
    SagaStatus,
    UncorrelatedEventError,
    UnknownEventError,
)
from saga_actors.clock import SystemClock
from saga_actors.engine.outside_events import accept_outside_event
from saga_actors.model.events import Event
from saga_actors.testing import Fault, SagaTestKit


def kit(c: Choreography = ORDER_CHOREOGRAPHY_PARALLEL, **faults: dict[str, Fault]) -> SagaTestKit:
    k = SagaTestKit(c, PARTICIPANTS)
    for name, methods in faults.items():
        k.participant(name).set_faults(methods)
    return k


def types(record) -> list[str]:
    return [e.type for e in record.events]


# --- fan-out and the join -----------------------------------------------------------------


def test_the_fan_out_runs_both_branches_and_the_join_sees_every_payload():
    k = kit()
    rec = k.run(sample_input(1), "o1", events=[("PaymentCaptured", capture(1))])
    assert rec.status is SagaStatus.COMPLETED, rec.error
    assert sorted(rec.completed) == ["authorize_payment", "create_shipment",
                                     "reserve_inventory"]
    assert rec.completed[-1] == "create_shipment"
    assert k.effects("inventory") == {"reserve_inventory": 1}
    assert k.effects("payment") == {"process_payment": 1}
    assert k.effects("shipping") == {"create_shipment": 1}
    log = {e.type: e for e in rec.events}
    # the early webhook waited in the log; the join ran once, caused by all three
    assert types(rec)[:2] == ["OrderCreated", "PaymentCaptured"]
    shipped = log["ShipmentCreated"]
    assert shipped.causation_id.split(",") == [log[t].id for t in (
        "InventoryReserved", "PaymentAuthorized", "PaymentCaptured")]
    assert {"reservation_id", "charge_id", "capture_id", "shipment_id"} <= set(shipped.payload)
    assert log["InventoryReserved"].reaction == "reserve_inventory"
    assert log["PaymentCaptured"].producer == "external" and rec.expects == []


def test_the_branches_run_side_by_side():
    """Payment takes 0.3 s: inventory is reserved and its event published while payment is
    still in flight (its own entry, its own attempt)."""
    k = kit(payment={"process_payment": Fault(delay_s=0.3)})
    seen: list[tuple[list[str], list[str]]] = []

    async def watch() -> None:
        while True:
            rec = k.journal.load("o2")
            if rec is not None and "InventoryReserved" in types(rec):
                seen.append((types(rec), [s for s, b in rec.branches.items() if b.in_flight]))
                return
            await asyncio.sleep(0.01)

    async def both():
        watcher = asyncio.ensure_future(watch())
        rec = await k.arun(sample_input(2), "o2", events=[("PaymentCaptured", capture(2))])
        await watcher
        return rec

    rec = asyncio.run(both())
    assert rec.status is SagaStatus.COMPLETED
    log, in_flight = seen[0]
    assert "PaymentAuthorized" not in log and in_flight == ["authorize_payment"]


def test_a_branch_failing_stops_the_other_in_flight_and_nothing_lands():
    """Inventory fails while payment's call is in flight: the payment call is stopped and
    fenced (never applied, even later), nothing is left to undo, the saga ends FAILED."""
    k = kit(payment={"process_payment": Fault(delay_s=5)})
    k.inject("reserve_inventory", fail=True)
    rec = k.run(sample_input(3), "o3")
    assert rec.status is SagaStatus.FAILED
    assert types(rec) == ["OrderCreated", "InventoryFailed"]
    assert rec.compensated == [] and k.effects("payment") == {}
    history = k.events("o3")
    assert ("action_attempt_failed", "authorize_payment") in history
    assert ("pivot_settled", "authorize_payment") in history
    # the stopped call never lands: its key is tombstoned by the fence
    late = asyncio.run(k.participant("payment").fence("o3", "authorize_payment"))
    assert late["applied"] is False


def test_a_branch_failing_after_the_other_completed_compensates_it():
    k = kit(inventory={"reserve_inventory": Fault(delay_s=0.2, fail=True)})
    rec = k.run(sample_input(4), "o4")
    assert rec.status is SagaStatus.FAILED
    assert rec.completed == ["authorize_payment"]
    assert rec.compensated == ["authorize_payment"]
    assert types(rec) == ["OrderCreated", "PaymentAuthorized", "InventoryFailed",
                          "PaymentRefunded"]
    assert k.effects("payment") == {"process_payment": 1, "refund_payment": 1}
    assert k.effects("inventory") == {}


def test_a_failure_after_the_join_compensates_every_branch_newest_first():
    k = kit(payment={"process_payment": Fault(delay_s=0.1)})
    k.inject("create_shipment", fail=True)
    rec = k.run(sample_input(5), "o5", events=[("PaymentCaptured", capture(5))])
    assert rec.status is SagaStatus.FAILED
    assert rec.completed == ["reserve_inventory", "authorize_payment"]
    assert rec.compensated == ["authorize_payment", "reserve_inventory"]  # newest first
    assert types(rec)[-3:] == ["ShipmentFailed", "PaymentRefunded", "InventoryReleased"]
    assert k.effects("inventory") == {"reserve_inventory": 1, "release_inventory": 1}
    assert k.effects("payment") == {"process_payment": 1, "refund_payment": 1}


def test_the_join_deadline_counts_from_its_first_event_and_compensates():
    """No capture comes: the join's window (from its first event) passes on the fake
    clock, PaymentNotCaptured is published and both branches are undone."""
    k = kit(order_choreography_parallel(capture_window_s=60))
    rec = k.run(sample_input(6), "o6")
    assert rec.status is SagaStatus.FAILED
    assert "PaymentNotCaptured" in types(rec)
    first = min(e.at for e in rec.events if e.type in ("InventoryReserved",
                                                        "PaymentAuthorized"))
    timed_out = next(e for e in rec.events if e.type == "PaymentNotCaptured")
    assert timed_out.at - first == pytest.approx(60, abs=1)
    assert sorted(rec.compensated) == ["authorize_payment", "reserve_inventory"]
    assert k.effects("shipping") == {}


def test_a_saga_waiting_for_its_join_says_what_it_has_and_what_it_waits_for():
    k = kit()
    k.clock = SystemClock()  # the 15-minute window must not pass while the test looks

    async def scenario():
        run = asyncio.ensure_future(k.arun(sample_input(7), "o7"))
        while not (k.journal.load("o7") and k.journal.load("o7").expects):
            await asyncio.sleep(0.01)
        rec = k.journal.load("o7")
        waiting = rec.expects[0]
        text = waiting.text(now=waiting.since + 180)
        k.publish("PaymentCaptured", capture(7))  # found by its order_id
        return text, rec.awaiting, await run

    text, awaiting, rec = asyncio.run(scenario())
    assert text.startswith("join 'create_shipment' has ")
    assert "waits for PaymentCaptured (external, correlated by order_id=order-7) " \
           "for 3 min of 15 min" in text
    assert "PaymentCaptured (external" in awaiting
    assert rec.status is SagaStatus.COMPLETED


@pytest.mark.parametrize("point", ["sent", "replied"])
@pytest.mark.parametrize("step", ["reserve_inventory", "authorize_payment", "create_shipment"])
def test_a_crash_mid_branch_resends_the_same_key_and_applies_once(step, point):
    """The process running the bus dies with one branch's call sent (or answered) and the
    other under way: rebuilt from the journal, each effect lands once."""
    k = kit()
    k.inject(step, crash=point)
    rec = k.run(sample_input(20), "o20", events=[("PaymentCaptured", capture(20))])
    assert rec.status is SagaStatus.COMPLETED and k.crashes == 1
    assert k.effects("inventory") == {"reserve_inventory": 1}
    assert k.effects("payment") == {"process_payment": 1}
    assert k.effects("shipping") == {"create_shipment": 1}
    assert len({e.id for e in rec.events}) == len(rec.events) == 5


def test_a_cancel_mid_fan_out_stops_both_branches_and_undoes_what_landed():
    k = kit(payment={"process_payment": Fault(delay_s=5)})
    k.clock = SystemClock()

    async def scenario():
        from saga_actors.engine.choreography import ChoreographyInstance

        run = asyncio.ensure_future(k.arun(sample_input(21), "o21"))
        while "InventoryReserved" not in types(k.journal.load("o21") or _empty()):
            await asyncio.sleep(0.01)
        instance = k._running["o21"]
        assert isinstance(instance, ChoreographyInstance)
        assert await instance.cancel("customer changed their mind") is None
        return await run

    rec = asyncio.run(scenario())
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["reserve_inventory"]
    assert k.effects("inventory") == {"reserve_inventory": 1, "release_inventory": 1}
    assert k.effects("payment") == {}  # stopped mid-call and fenced
    assert "cancelled: customer changed their mind" in (rec.error or "")


def test_a_log_journaled_mid_compensation_by_an_older_version_is_undone_all_the_same():
    """An older version kept no order of compensations (its chain of events made it): a
    saga it left COMPENSATING, its failure event out, still gets every completed branch
    undone, newest first."""
    k = kit(order_choreography_parallel(capture_window_s=60))
    k.inject("create_shipment", fail=True)
    failed = k.run(sample_input(30), "o30", events=[("PaymentCaptured", capture(30))])
    assert failed.status is SagaStatus.FAILED
    # the saga as the older version would have journaled it, just after ShipmentFailed
    # (its participants answer the compensations from their records: the same keys)
    cut = [e.type for e in failed.events].index("ShipmentFailed") + 1
    old = failed.model_copy(update={
        "status": SagaStatus.COMPENSATING, "events": failed.events[:cut], "to_compensate": [],
        "compensated": [], "finished_at": None, "seq": failed.seq + 1})
    last = k.history("o30")[-1]
    k.journal.commit(old, last.model_copy(update={"seq": old.seq, "event": Event.RESUMED}))
    from saga_actors.engine.choreography import ChoreographyInstance

    rec = asyncio.run(ChoreographyInstance(k.saga, k.journal.load("o30"), k.journal,
                                           k._gateway, clock=k.clock).run())
    assert rec.status is SagaStatus.FAILED, rec.error
    assert rec.compensated == old.completed[::-1]


class ManualClock:
    """Time moves only when the test moves it; a sleep waits for that."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        until = self.t + seconds
        while self.t < until:
            await asyncio.sleep(0.001)


def test_a_joins_window_is_journaled_so_a_restart_does_not_reset_it():
    """The capture window (60 s) counts from the join's first event, kept in the journal:
    a bus that dies 40 s in and is rebuilt times the saga out 20 s later, not 60."""
    from saga_actors.engine.choreography import ChoreographyInstance

    k = kit(order_choreography_parallel(capture_window_s=60))
    clock = k.clock = ManualClock()
    asyncio.run(_admit_only(k, 40))

    def fresh() -> ChoreographyInstance:
        return ChoreographyInstance(k.saga, k.journal.load("o40"), k.journal, k._gateway,
                                    clock=clock)

    async def scenario():
        first = asyncio.ensure_future(fresh().run())
        while not [x for x in k.journal.load("o40").expects
                   if x.waits_for == ["PaymentCaptured"]]:
            await asyncio.sleep(0.001)
        clock.t += 40
        await asyncio.sleep(0.01)
        first.cancel()  # the bus dies, 40 s into the window
        again = asyncio.ensure_future(fresh().run())
        await asyncio.sleep(0.01)
        assert not again.done()
        clock.t += 21  # 61 s from the first event, 21 since the restart
        return await asyncio.wait_for(again, 5)

    rec = asyncio.run(scenario())
    assert rec.status is SagaStatus.FAILED
    timed_out = next(e for e in rec.events if e.type == "PaymentNotCaptured")
    first_event = min(e.at for e in rec.events if e.type in ("InventoryReserved",
                                                             "PaymentAuthorized"))
    assert 60 <= timed_out.at - first_event <= 62


# --- events from outside ------------------------------------------------------------------


def test_an_event_sent_twice_is_taken_once():
    """The provider retries its webhook with the same event id: kept once, taken once."""
    k = kit()
    k.clock = SystemClock()

    async def scenario():
        run = asyncio.ensure_future(k.arun(sample_input(8), "o8"))
        while k.journal.load("o8") is None:
            await asyncio.sleep(0)
        for _ in range(3):
            k.publish("PaymentCaptured", capture(8), saga_id="o8", event_id="hook-1")
        return await run

    record = asyncio.run(scenario())
    assert record.status is SagaStatus.COMPLETED
    assert [(e.type, e.external_id) for e in record.events if e.producer == "external"] == [
        ("PaymentCaptured", "hook-1")]
    assert [s.signal_id for s in k.journal.signals("o8")] == ["hook-1"]
    assert k.effects("shipping") == {"create_shipment": 1}
    assert [t.event.value for t in k.history("o8")].count("event_received") == 1


def test_an_event_after_its_reaction_ran_is_kept_and_never_applied_twice():
    k = kit()

    async def scenario():
        run = asyncio.ensure_future(k.arun(sample_input(9), "o9",
                                           events=[("PaymentCaptured", capture(9))]))
        while "ShipmentCreated" not in types(k.journal.load("o9") or _empty()):
            await asyncio.sleep(0)
        return await run

    rec = asyncio.run(scenario())
    assert rec.status is SagaStatus.COMPLETED
    with pytest.raises(SagaFinishedError, match="o9 is COMPLETED: it takes no more events"):
        k.publish("PaymentCaptured", capture(9), saga_id="o9", event_id="late")
    assert len(k.journal.signals("o9")) == 1  # the late one journaled nothing
    assert k.effects("shipping") == {"create_shipment": 1}


def test_what_cannot_be_taken_from_outside_is_refused_and_journals_nothing():
    k = kit(order_choreography_parallel(capture_window_s=60))
    k.run(sample_input(10), "o10")  # FAILED: no capture came
    c = k.saga
    cases = [
        (lambda: k.publish("PaymentCaptured", {**capture(11)}), UncorrelatedEventError,
         "no saga has order_id='order-11'"),
        (lambda: k.publish("PaymentCaptured", {**capture(10), "captured_cents": 0},
                           saga_id="o10"), SagaFinishedError, "takes no more events"),
        (lambda: k.publish("ShipmentCreated", {}, saga_id="o10"), UnknownEventError,
         "does not enter a running saga from outside"),
        (lambda: k.publish("Nope", {}, saga_id="o10"), UnknownEventError, "not declared"),
    ]
    for send, error, message in cases:
        with pytest.raises(error, match=message):
            send()
    running = kit()
    asyncio.run(_admit_only(running, 12))
    rec = running.journal.load("o12")
    with pytest.raises(EventPayloadError, match="captured_cents"):
        accept_outside_event(running.journal, c, rec, "PaymentCaptured",
                             {**capture(12), "captured_cents": 0}, event_id="x", now=0,
                             max_bytes=10_000)
    with pytest.raises(EventPayloadError, match="is not the saga's"):
        accept_outside_event(running.journal, c, rec, "PaymentCaptured", capture(13),
                             event_id="y", now=0, max_bytes=10_000)
    assert k.journal.signals("o10") == [] and running.journal.signals("o12") == []


async def _admit_only(k: SagaTestKit, n: int) -> None:
    from saga_actors.engine.admission import admit
    from saga_actors.engine.startable import start_record

    record, _ = start_record(k.saga, sample_input(n), f"o{n}", None, now=k.clock.now(),
                             lookup=lambda name: None)
    admit(k.journal, record)


def _empty():
    class Empty:
        events: list = []
    return Empty()


# --- the graph ----------------------------------------------------------------------------


class Start(BaseModel):
    order_id: str


class A(Start):
    a: int = 0


class B(Start):
    b: int = 0


class AFailed(Start):
    pass


class BFailed(Start):
    pass


class Done(Start):
    pass


class Undone(Start):
    pass


def flow(*reactions: Reaction, **more) -> Choreography:
    return Choreography(name="g", events=(Start, A, B, AFailed, BFailed, Done, Undone),
                        start="Start", reactions=reactions, completes_on=("Done",),
                        fails_on=("Undone",), **more)


def test_the_graph_check_refuses_a_join_whose_events_cannot_all_happen():
    a = Reaction(on="Start", participant="p", handler="a", publishes="A", failure="AFailed")
    undo_a = Reaction(name="undo_a", on="AFailed", participant="p", handler="undo_a",
                      compensates="a", publishes="Undone")
    join = Reaction(on_all=("A", "AFailed"), participant="p", handler="ship", publishes="Done")
    with pytest.raises(SagaDefinitionError, match="join 'ship' waits for 'AFailed', which "
                       "cannot happen on the way to it"):
        flow(a, undo_a, join)


def test_the_graph_check_refuses_a_branch_failure_that_leaves_a_sibling_uncompensated():
    a = Reaction(on="Start", participant="p", handler="a", publishes="A", failure="AFailed")
    b = Reaction(on="Start", participant="q", handler="b", publishes="B", failure="BFailed")
    undo_a = Reaction(name="undo_a_after_b", on="BFailed", participant="p",
                      handler="undo_a", compensates="a", publishes="Undone")
    undo_b = Reaction(name="undo_b", on="AFailed", participant="q", handler="undo_b",
                      compensates="b", publishes="Undone")
    join = Reaction(on_all=("A", "B"), participant="p", handler="ship", publishes="Done")
    flow(a, b, undo_a, undo_b, join)  # each failure undoes the other branch: fine
    with pytest.raises(SagaDefinitionError, match="failure event 'BFailed' \\(of 'b'\\) never "
                       "leads to a compensation of 'a', which may have completed on a "
                       "parallel branch"):
        flow(a, b, undo_b, join, Reaction(name="noop", on="BFailed", participant="q",
                                          handler="undo_b", compensates="b",
                                          publishes="Undone"), undo_a.model_copy(
            update={"on": "AFailed", "name": "undo_a_self"}))
    with pytest.raises(SagaDefinitionError, match="success event 'Done' can come while "
                       "reaction '\\w+' has not finished"):
        flow(a, b, undo_a, undo_b,
             Reaction(on="A", participant="p", handler="finish", publishes="Done"),
             Reaction(on="B", participant="q", handler="note", publishes="Done"))
    with pytest.raises(SagaDefinitionError, match="a join \\(on_all\\) waits for two or more"):
        Reaction(on_all=("A",), participant="p", handler="x", publishes="Done")
    with pytest.raises(SagaDefinitionError, match="give one of on= .* or on_all="):
        Reaction(on="A", on_all=("A", "B"), participant="p", handler="x", publishes="Done")


def test_the_graph_check_of_events_from_outside():
    class Paid(BaseModel):
        external: ClassVar[bool] = True
        correlate_by: ClassVar[str] = "order_id"
        order_id: str

    class Billed(BaseModel):
        external: ClassVar[bool] = True
        correlate_by: ClassVar[str] = "invoice"
        invoice: str

    a = Reaction(on="Start", participant="p", handler="a", publishes="A")

    def build(*reactions: Reaction, extra=()) -> Choreography:
        return Choreography(name="g", events=(Start, A, Paid, Done, *extra),
                            start="Start", reactions=reactions, completes_on=("Done",))

    c = build(a, Reaction(on_all=("A", "Paid"), participant="p", handler="ship",
                          publishes="Done"))
    assert c.external() == {"Paid": "order_id"}
    with pytest.raises(SagaDefinitionError, match="'Billed' is correlated by 'invoice', "
                       "which must be a field of both 'Billed' and the start event"):
        build(a, Reaction(on_all=("A", "Billed"), participant="p", handler="ship",
                          publishes="Done"), extra=(Billed,))
    with pytest.raises(SagaDefinitionError, match="reaction 'ship' reacts to 'Paid', an event "
                       "from outside, with a deadline"):
        build(a, Reaction(on_all=("A", "Paid"), participant="p", handler="join_them",
                          publishes="Done"),
              Reaction(on="Paid", participant="p", handler="ship", publishes="Done",
                       deadline_s=5, timeout_event="Done"))

    class Hook(BaseModel):  # a field, not a ClassVar: said, not silently ignored
        external: bool = True
        order_id: str

    with pytest.raises(SagaDefinitionError, match="event 'Hook' has a field 'external': to "
                       "declare it, write `external: ClassVar"):
        build(a, Reaction(on="A", participant="p", handler="ship", publishes="Done"),
              extra=(Hook,))
    with pytest.raises(SagaDefinitionError, match="event 'Paid' is external, but a reaction "
                       "publishes it"):
        build(a.model_copy(update={"publishes": "Paid"}),
              Reaction(on="Paid", participant="p", handler="ship", publishes="Done"))


def test_a_copy_with_other_reactions_is_indexed_anew():
    """model_copy(update=...) runs no validator: the reactions by event follow the copy."""
    c = ORDER_CHOREOGRAPHY_PARALLEL
    quick = tuple(r.model_copy(update={"deadline_s": 5.0}) if r.on_all else r
                  for r in c.reactions)
    copy = c.model_copy(update={"reactions": quick})
    assert copy.reaction_on("PaymentCaptured").deadline_s == 5.0
    assert c.reaction_on("PaymentCaptured").deadline_s == 900.0
