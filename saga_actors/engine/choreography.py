"""The event bus of choreographed sagas: each saga's event log, delivered in order. No Ray.

A :class:`ChoreographyInstance` keeps one saga's log (``SagaRecord.events``, journaled with
every transition, so the log lives in the journal's store) and delivers its events to the
reactions that wait for them: the same idempotent participant call as an orchestrated step,
keyed ``<saga_id>/<step>/<action|compensation>``. Several reactions on one event run side
by side (a fan-out), each with its own retries and deadline; a join runs once all of its
events are in the log; events from outside (``external``) enter the log when the bus takes
them from the journal, where their sender put them. The participant commits its effect and
its idempotency record (its inbox) in one transaction, and the recorded outcome is what the
published event is made of (its outbox): a handler run again (a redelivery after a crash)
returns the recorded outcome, and the event it leads to has the same id (derived from its
cause), so nothing is published twice.

A reaction that fails for good publishes its failure event (its timeout event past its
deadline); the other branches are stopped and settled, and the compensations run as
orchestration's ``Parallel`` does: newest first, each step's compensating reaction being
the one the failure event leads to. With no failure event declared the saga is parked
STUCK (it holds up no other saga), and ``retry`` delivers it again.
:mod:`saga_actors.ray.actors` runs instances in the bus actors ``saga_actors:bus:<i>``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger

from saga_actors.engine import bus_log
from saga_actors.engine.bus_log import event_id, start_event, track
from saga_actors.engine.failures import Failure
from saga_actors.engine.reaction_calls import ReactionCalls, where_fields
from saga_actors.engine.runner import JournaledRun, Outcome
from saga_actors.model.choreography import Choreography, Reaction, event_payload
from saga_actors.model.events import Event
from saga_actors.model.messages import NotJSONError, encode_json
from saga_actors.model.records import BusEvent
from saga_actors.model.state import SagaStatus

__all__ = ["ChoreographyInstance", "event_id", "start_event", "track"]

OUTSIDE_LOOK_S = 60.0  # a saga waiting for events from outside looks in the journal this often
Running = dict["asyncio.Future[Outcome]", tuple[Reaction, list[BusEvent]]]
Failed = tuple[Reaction, list[BusEvent], Failure]


class ChoreographyInstance(ReactionCalls, JournaledRun):
    """Delivers one choreographed saga's events until it is terminal."""

    definition: Choreography

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._news = True  # events from outside may wait in the journal
        self._waits_of: tuple[int, list] = (-1, [])  # (log length, what it waits for)
        self._waker: asyncio.Future | None = None  # set when a nudge comes

    def nudge(self) -> None:
        self._news = True
        super().nudge()

    # --- what JournaledRun asks ----------------------------------------------------

    def _cancel_refusal(self) -> str | None:
        """A cancel publishes the failure event of a reaction under way (the compensations
        follow): one must declare a failure event."""
        under_way = self._under_way()
        if not under_way:
            return "no reaction is under way"
        if not any(r.failure for r, _ in under_way):
            names = ", ".join(repr(r.name) for r, _ in under_way)
            return (f"the reaction under way, {names}, declares no failure event "
                    "(nothing would start the compensations)")
        return None

    async def _advance(self) -> None:
        if self.record.status is SagaStatus.COMPENSATING:
            await self._compensate()
        else:
            await self._forward()

    # --- forward: the due reactions side by side --------------------------------------

    async def _forward(self) -> None:
        running: Running = {}
        failed: Failed | None = None
        try:
            while True:
                self._wake.clear()  # a nudge from here on wakes the wait below
                if failed is None:
                    await self._take_outside_events()
                    if not running and self._completed():
                        await self._commit(Event.SAGA_COMPLETED, status=SagaStatus.COMPLETED,
                                           awaiting=None, expects=[],
                                           finished_at=self._clock.now())
                        return
                    failed = self._due_failure()
                    if failed is not None:
                        self.stop_branches(f"reaction {failed[0].name!r} failed")
                    else:
                        due = bus_log.due(self.definition, self.record.events,
                                          {r.name for r, _ in running.values()})
                        if not running and len(due) == 1 and not self.definition.waits:
                            # a chain's one reaction: awaited here, as no other can come
                            outcome = await self._call_with_retries(*due[0])
                            failed, go_on = await self._ended(*due[0], outcome, failed)
                            if not go_on:
                                return  # parked
                            continue
                        for reaction, causes in due:
                            call = asyncio.ensure_future(self._call_with_retries(reaction,
                                                                                 causes))
                            running[call] = (reaction, causes)
                if not running:
                    if failed is not None:
                        break
                    if not await self._wait_for_events():
                        return  # parked
                    continue
                failed, go_on = await self._next_outcome(running, failed)
                if not go_on:
                    return  # parked
        finally:
            self.stop_branches(None)
            for call in running:  # only when parked, or this task itself is cancelled
                call.cancel()
            if self._waker is not None:
                self._waker.cancel()
                self._waker = None
        await self._fail(*failed)

    async def _next_outcome(self, running: Running,
                            failed: Failed | None) -> tuple[Failed | None, bool]:
        """Wait for a reaction under way to end (or a nudge) and journal how it ended: its
        event, or (the first that fails for good) the failure that stops the others."""
        if self._waker is None or self._waker.done():
            self._waker = asyncio.ensure_future(self._wake.wait())
        # (a join's deadline may pass while what it waits for is under way)
        done, _ = await asyncio.wait({*running, self._waker}, timeout=self._until_due(),
                                     return_when=asyncio.FIRST_COMPLETED)
        for call in done:
            if call is self._waker:
                continue
            reaction, causes = running.pop(call)
            failed, go_on = await self._ended(reaction, causes, call.result(), failed)
            if not go_on:
                return failed, False
        return failed, True

    async def _ended(self, reaction: Reaction, causes: list[BusEvent], outcome: Outcome,
                     failed: Failed | None) -> tuple[Failed | None, bool]:
        """Journal how a reaction ended (settled first if its outcome is unknown): its
        event, or (the first that fails for good) the failure that stops the others.
        False: the saga was parked."""
        output, failure = outcome
        if failure is not None and failure.uncertain:
            settled = await self._settle_reaction(reaction, failure)
            if settled is None:
                return failed, False
            output, failure = settled
        if failure is None:
            if not await self._succeeded(causes, reaction, output):
                return failed, False
        elif failed is None:
            failed = (reaction, causes, failure)
            self.stop_branches(f"reaction {reaction.name!r} failed")
        return failed, True

    async def _wait_for_events(self) -> bool:
        """Nothing is under way: wait for an event from outside, a join's other events, or
        a deadline. Nothing that could come: parked STUCK (False)."""
        rec = self.record
        expects = bus_log.waiting(self.definition, rec)
        if not expects:
            last = rec.events[-1].type if rec.events else None
            await self._park(f"nothing reacts to what the saga has (last event {last!r})",
                             "NoReaction", step=None)
            return False
        await self._flush()
        await self._pause(self._until_due() or OUTSIDE_LOOK_S)
        self._news = True  # (a nudge may have been lost: look in the journal again)
        return True

    def _until_due(self) -> float | None:
        """Seconds until the next deadline of a join or of the saga (None: none)."""
        rec = self.record
        due = [x.since + x.deadline_s for x in self._waiting() if x.deadline_s is not None]
        if rec.deadline_at is not None:
            due.append(rec.deadline_at)
        return max(0.0, min(due) - self._clock.now()) if due else None

    def _completed(self) -> bool:
        return any(e.type in self.definition.completes_on for e in self.record.events)

    def _due_failure(self) -> Failed | None:
        """A cancel or the saga's deadline (the failure of a reaction under way that
        declares one), or a join whose deadline passed before all its events came."""
        abort = self._abort_reason()
        if abort:
            reaction, causes = next((r, e) for r, e in self._under_way() if r.failure)
            return reaction, causes, Failure.aborted(self._abort_type(), abort, uncertain=False)
        now = self._clock.now()
        for expect in self._waiting():
            if expect.deadline_s is not None and now >= expect.since + expect.deadline_s:
                reaction = self.definition.reaction(expect.reaction)
                first = bus_log.first_of_each(self.record.events)
                return reaction, [first[t] for t in expect.has], Failure.past_deadline(
                    "JoinTimedOut", f"no {' and '.join(expect.waits_for)} within "
                    f"{expect.deadline_s:g}s of {expect.has[0]}", uncertain=False)
        return None

    async def _take_outside_events(self) -> None:
        """Events from outside that the journal holds for this saga and its log does not:
        into the log, in the order they are taken."""
        if not self._news or not self.definition.external():
            return
        self._news = False
        rec, c = self.record, self.definition
        taken = {e.external_id for e in rec.events if e.external_id}
        fresh = [s for s in self._journal.signals(rec.saga_id)
                 if s.name in c.external() and s.signal_id not in taken]
        for signal in fresh:
            new = bus_log.outside_event(c, rec.saga_id, signal.name, signal.payload,
                                        signal.signal_id, self._clock.now())
            logger.info("took {} from outside ({})", signal.name, signal.signal_id)
            await self._commit(
                Event.EVENT_RECEIVED, defer=signal is not fresh[-1],
                detail={"event": new.type, "event_id": new.id, "external_id": signal.signal_id,
                        "consumer": new.consumer},
                **self._log_changes([*self.record.events, new]))

    def _log_changes(self, events: list[BusEvent], due: list | None = None,
                     **more: Any) -> dict[str, Any]:
        """The record fields that go with a new log: what the saga now waits for (the
        reactions under way or ``due``, the joins and the events from outside)."""
        c = self.definition
        record = self.record.model_copy(update={"events": events, **more})  # (unvalidated)
        if due is None:
            due = bus_log.due(c, events, set(record.branches))
        running = [c.reaction(name) for name in record.branches]
        running += [r for r, _ in due]
        if record.status is SagaStatus.COMPENSATING:
            running = []
        expects = bus_log.waiting(c, record) if c.waits else []
        return {"events": events, "expects": expects, "cursor": len(events) - 1,
                "awaiting": bus_log.awaiting_text(c, running, expects)}

    async def _succeeded(self, causes: list[BusEvent], reaction: Reaction,
                         output: dict[str, Any]) -> bool:
        """Publish the event a reaction leads to; False if its output is invalid (parked)."""
        rec, c = self.record, self.definition
        forward = reaction.kind == "action"
        seen = bus_log.data_of(causes) if forward else bus_log.data_of(rec.events)
        clash = sorted(set(output) & set(seen)) if forward else []
        payload = {**seen, **output}
        try:
            if clash:
                raise ValueError(f"{clash} would overwrite the saga's data")
            encode_json(output)
            event_payload(c, reaction.publishes or "", payload)
        except (ValueError, NotJSONError) as exc:
            await self._park(f"{reaction.name!r} applied, but its output is invalid for "
                             f"{reaction.publishes!r}: {exc}", "InvalidOutput",
                             step=reaction.step)
            return False
        if forward:
            done = {"completed": [*rec.completed, reaction.step],
                    "outputs": {**rec.outputs, reaction.step: output},
                    "branches": {k: v for k, v in rec.branches.items() if k != reaction.step}}
        else:
            done = {"compensated": [*rec.compensated, reaction.step],
                    "to_compensate": rec.to_compensate[1:]}
        await self._publish(causes, reaction, reaction.publishes or "", payload,
                            outcome="succeeded", **done)
        return True

    # --- a failure, and the compensations ---------------------------------------------

    async def _fail(self, reaction: Reaction, causes: list[BusEvent], failure: Failure) -> None:
        """Publish the failure (or timeout) event of the reaction that failed for good and
        start the compensations; with none declared, park the saga with its event."""
        rec = self.record
        event_type = (reaction.timeout_event if failure.deadline and reaction.timeout_event
                      else reaction.failure)
        if not event_type:  # a poison event: parked with it, nothing else held up
            await self._park(f"{reaction.name!r} failed on {'+'.join(reaction.triggers)!r}: "
                             f"{failure.error}", failure.error_type, step=reaction.step)
            return
        logger.warning("{} failed for good ({}): publishing {}", reaction.name,
                       failure.error, event_type)
        uncertain = [s for s in rec.uncertain if s != reaction.step]
        todo = self._undo_order(event_type, uncertain)
        payload = {**bus_log.data_of(causes),
                   "failure": {"step": reaction.step, "error": failure.error,
                               "error_type": failure.error_type}}
        await self._publish(causes, reaction, event_type, payload, outcome="failed",
                            status=SagaStatus.COMPENSATING, error=failure.error,
                            uncertain=uncertain, to_compensate=todo, branches={},
                            detail_more={"to_compensate": todo})

    async def _compensate(self) -> None:
        """Each step to compensate, newest first, by the compensating reaction that the
        failure event leads to; then FAILED."""
        c = self.definition
        failure = next((e.type for e in self.record.events if e.type in c.failure_events()),
                       None)
        if failure is not None and not self.record.to_compensate:  # (a log of an older
            self.record = self.record.model_copy(update={  # version: the order, derived)
                "to_compensate": self._undo_order(failure)})
        while self.record.to_compensate and failure is not None:
            step = self.record.to_compensate[0]
            reaction = c.compensation_for(step, failure)
            if reaction is None:  # the graph check makes this a bug, not a user error
                await self._park(f"no compensation of {step!r} after {failure!r}",
                                 "NoReaction", step=step)
                return
            causes = [self.record.events[-1]]
            output, fault = await self._call_with_retries(reaction, causes)
            if fault is not None:
                await self._park(f"compensation {reaction.name!r} failed: {fault.error}",
                                 fault.error_type, step=reaction.step)
                return
            if not await self._succeeded(causes, reaction, output):
                return
        await self._commit(Event.SAGA_FAILED, status=SagaStatus.FAILED, awaiting=None,
                           expects=[], finished_at=self._clock.now())

    async def _publish(self, causes: list[BusEvent], reaction: Reaction, event_type: str,
                       payload: dict[str, Any], *, outcome: str,
                       detail_more: dict[str, Any] | None = None, **changes: Any) -> None:
        """Append the event ``reaction`` leads to (journaled); ``outcome`` (succeeded,
        failed) is how the reaction that published it ended."""
        rec, c = self.record, self.definition
        cause_id = ",".join(e.id for e in causes)
        new = BusEvent(id=event_id(rec.saga_id, cause_id, reaction.name, event_type),
                       saga_id=rec.saga_id, version=c.version, type=event_type,
                       payload=payload, causation_id=cause_id,
                       producer=f"{reaction.participant}.{reaction.handler}",
                       consumer=bus_log.consumer(c, event_type), reaction=reaction.name,
                       at=self._clock.now())
        status = changes.pop("status", None) or (
            SagaStatus.COMPENSATING if rec.status is SagaStatus.COMPENSATING
            else SagaStatus.PENDING)
        events = [*rec.events, new]
        branches = changes.get("branches", rec.branches)
        due = bus_log.due(c, events, set(branches))
        # an event that something reacts to is journaled with that delivery's first write:
        # nothing acts on it before then, and a crash before it redelivers its cause
        await self._commit(
            Event.EVENT_PUBLISHED, step=reaction.step, status=status,
            defer=status is SagaStatus.PENDING and any(event_type in r.triggers
                                                       for r, _ in due),
            data=bus_log.data_of(events), **where_fields(branches),
            detail={"event": event_type, "event_id": new.id, "causation_id": cause_id,
                    "producer": new.producer, "consumer": new.consumer,
                    "phase": reaction.kind, "outcome": outcome, **(detail_more or {})},
            **self._log_changes(events, due, status=status, branches=branches),
            **changes)

    # --- helpers --------------------------------------------------------------------

    def _under_way(self) -> list[tuple[Reaction, list[BusEvent]]]:
        """The forward reactions running or due now, and those waiting for a join's other
        events or an event from outside."""
        rec, c = self.record, self.definition
        if rec.status is SagaStatus.COMPENSATING or rec.status.terminal:
            return []
        found = bus_log.due(c, rec.events, set())
        first = bus_log.first_of_each(rec.events)
        names = {r.name for r, _ in found}
        for expect in self._waiting():
            if expect.reaction not in names:
                found.append((c.reaction(expect.reaction),
                              [first[t] for t in expect.has] or rec.events[-1:]))
        return found

    def _abort_reason(self) -> str | None:
        rec = self.record
        if not (rec.cancel_reason or rec.deadline_at is not None):
            return None
        if not any(r.failure for r, _ in self._under_way()):
            return None  # nothing declared to publish: it goes on
        if rec.cancel_reason:
            return f"cancelled: {rec.cancel_reason}"
        if self._clock.now() >= rec.deadline_at:
            return f"deadline of {self.definition.deadline_s:g}s exceeded"
        return None

