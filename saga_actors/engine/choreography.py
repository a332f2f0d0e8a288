"""The event bus of choreographed sagas: each saga's event log, delivered in order. No Ray.

A :class:`ChoreographyInstance` keeps one saga's log (``SagaRecord.events``, journaled with
every transition, so the log lives in the journal's store) and delivers its events, one
at a time and in order, to the participant that reacts to each: the same idempotent
participant call as an orchestrated step, keyed ``<saga_id>/<step>/<action|compensation>``.
The participant commits its effect and its idempotency record (its inbox) in one
transaction, and the recorded outcome is what the published event is made of (its outbox):
a handler run again (a redelivery after a crash) returns the recorded outcome, and the
event it leads to has the same id (derived from its cause), so nothing is published twice.

Delivery is at least once; effects are applied once. A handler that fails for good
publishes its declared failure event, which starts the compensating reactions; with none
declared the saga is parked STUCK with the event (it holds up no other saga), and
``retry`` delivers it again. A reaction's deadline publishes its timeout event after
fencing the late handler, so its effect never lands afterwards. :mod:`saga_actors.ray.actors`
runs instances in the bus actors ``saga_actors:bus:<i>``, sharded by saga id.
"""

from __future__ import annotations

import uuid
from typing import Any

from loguru import logger

from saga_actors.engine.failures import Failure
from saga_actors.engine.runner import Call, JournaledRun, Outcome
from saga_actors.model.choreography import Choreography, Reaction, event_payload
from saga_actors.model.events import Event
from saga_actors.model.messages import NotJSONError, StepRequest, encode_json
from saga_actors.model.records import BusEvent
from saga_actors.model.state import SagaStatus

_IDS = uuid.UUID("6f0c7c8e-2a52-4c8e-9a57-0b8f6f1d6a11")  # namespace of derived event ids


def event_id(saga_id: str, causation_id: str | None, reaction: str, event_type: str) -> str:
    """The id of an event: the same whenever the same cause leads to it again."""
    return str(uuid.uuid5(_IDS, f"{saga_id}/{causation_id}/{reaction}/{event_type}"))


def start_event(c: Choreography, saga_id: str, payload: dict[str, Any], now: float) -> BusEvent:
    """The event that starts a saga: its input."""
    return BusEvent(id=event_id(saga_id, None, "start", c.start), saga_id=saga_id,
                    version=c.version, type=c.start,
                    payload=payload, producer="start", consumer=_consumer(c, c.start), at=now)


def track(c: Choreography, events: list[BusEvent]) -> SagaStatus:
    """A choreographed saga's state, derived from its events against the declared graph:
    a success terminal event COMPLETED, a failure terminal event (after a failure)
    FAILED, any failure or timeout event COMPENSATING, else PENDING (STARTED: only the
    start event). STUCK is not an event: the bus parks a saga."""
    if not events:
        return SagaStatus.STARTED
    failed = c.failure_events()
    if events[-1].type in c.completes_on:
        return SagaStatus.COMPLETED
    if any(e.type in failed for e in events):
        return SagaStatus.FAILED if events[-1].type in c.fails_on else SagaStatus.COMPENSATING
    return SagaStatus.STARTED if len(events) == 1 else SagaStatus.PENDING


def awaiting(c: Choreography, event: BusEvent) -> str | None:
    """What a saga waits for after ``event``: "PaymentProcessed from payment; next
    expected: ShipmentCreated"."""
    reaction = c.reaction_on(event.type)
    if reaction is None or not reaction.publishes:
        return None
    text = f"{reaction.publishes} from {reaction.participant}"
    after = c.reaction_on(reaction.publishes)
    if after is not None and after.publishes:
        text += f"; next expected: {after.publishes}"
    return text


class ChoreographyInstance(JournaledRun):
    """Delivers one choreographed saga's events, in order, until it is terminal."""

    definition: Choreography

    # --- what JournaledRun asks ----------------------------------------------------

    def _cancel_refusal(self) -> str | None:
        """A cancel publishes the failure event of the reaction under way (its compensation
        chain follows): only a forward reaction that declares one can be cancelled."""
        reaction = self._current()
        if reaction is None:
            return "no reaction is under way"
        if reaction.kind != "action" or not reaction.failure:
            return (f"the reaction under way, {reaction.name!r}, declares no failure event "
                    "(nothing would start the compensations)")
        return None

    async def _advance(self) -> None:
        await self._deliver_next()

    async def _deliver_next(self) -> None:
        rec, c = self.record, self.definition
        event = rec.events[rec.cursor]
        if event.type in c.fails_on:
            await self._commit(Event.SAGA_FAILED, status=SagaStatus.FAILED, awaiting=None,
                               finished_at=self._clock.now())
            return
        reaction = c.reaction_on(event.type)
        if reaction is None:  # the graph check makes this a bug, not a user error
            await self._park(f"no reaction to {event.type!r}", "NoReaction", step=None)
            return
        abort = self._abort_reason() if reaction.kind == "action" else None
        if abort:
            output, failure = {}, Failure.aborted(self._abort_type(), abort,
                                                  uncertain=self._in_doubt(reaction))
        else:
            output, failure = await self._call_with_retries(event, reaction)
        if failure is not None and reaction.kind == "action" and failure.uncertain:
            settled = await self._settle_reaction(reaction, failure)
            if settled is None:
                return  # parked
            output, failure = settled
        if failure is None:
            await self._succeeded(event, reaction, output)
        elif reaction.kind == "compensation":
            await self._park(f"compensation {reaction.name!r} failed: {failure.error}",
                             failure.error_type, step=reaction.step)
        elif failure.deadline and reaction.timeout_event:
            await self._publish_failure(event, reaction, reaction.timeout_event, failure)
        elif reaction.failure:
            await self._publish_failure(event, reaction, reaction.failure, failure)
        else:  # a poison event: parked with it, nothing else held up
            await self._park(f"{reaction.name!r} failed on {event.type!r}: {failure.error}",
                             failure.error_type, step=reaction.step)

    async def _succeeded(self, event: BusEvent, reaction: Reaction,
                         output: dict[str, Any]) -> None:
        rec, c = self.record, self.definition
        clash = sorted(set(output) & set(event.payload))
        payload = {**event.payload, **output}
        try:
            if clash:
                raise ValueError(f"{clash} would overwrite the saga's data")
            encode_json(output)
            event_payload(c, reaction.publishes or "", payload)
        except (ValueError, NotJSONError) as exc:
            await self._park(f"{reaction.name!r} applied, but its output is invalid for "
                             f"{reaction.publishes!r}: {exc}", "InvalidOutput",
                             step=reaction.step)
            return
        done = {"completed": [*rec.completed, reaction.step]} if reaction.kind == "action" \
            else {"compensated": [*rec.compensated, reaction.step]}
        outputs = ({**rec.outputs, reaction.step: output} if reaction.kind == "action"
                   else rec.outputs)
        await self._publish(event, reaction, reaction.publishes or "", payload,
                             outcome="succeeded", outputs=outputs, **done)

    async def _publish_failure(self, event: BusEvent, reaction: Reaction, event_type: str,
                               failure: Failure) -> None:
        logger.warning("{} failed for good ({}): publishing {}", reaction.name,
                       failure.error, event_type)
        payload = {**event.payload,
                   "failure": {"step": reaction.step, "error": failure.error,
                               "error_type": failure.error_type}}
        await self._publish(event, reaction, event_type, payload, outcome="failed",
                             error=failure.error, uncertain=[s for s in self.record.uncertain
                                        if s != reaction.step])

    async def _publish(self, cause: BusEvent, reaction: Reaction, event_type: str,
                       payload: dict[str, Any], *, outcome: str, **changes: Any) -> None:
        """Append the next event to the log (journaled) and move the cursor to it;
        ``outcome`` (succeeded, failed) is how the reaction that published it ended."""
        rec, c = self.record, self.definition
        new = BusEvent(id=event_id(rec.saga_id, cause.id, reaction.name, event_type),
                       saga_id=rec.saga_id, version=c.version,
                       type=event_type, payload=payload, causation_id=cause.id,
                       producer=f"{reaction.participant}.{reaction.handler}",
                       consumer=_consumer(c, event_type), at=self._clock.now())
        events = [*rec.events, new]
        status = track(c, events)
        if status is SagaStatus.FAILED:
            status = SagaStatus.COMPENSATING  # FAILED once the terminal event is delivered
        if status is SagaStatus.STARTED:
            status = SagaStatus.PENDING
        # an event that something reacts to is journaled with that delivery's first write:
        # nothing acts on it before then, and a crash before it redelivers its cause
        await self._commit(
            Event.EVENT_PUBLISHED, step=reaction.step, status=status, events=events,
            defer=c.reaction_on(event_type) is not None and not status.terminal,
            cursor=len(events) - 1, data=payload, current_step=None, phase=None, attempt=0,
            in_flight=False, awaiting=awaiting(c, new),
            finished_at=self._clock.now() if status.terminal else None,
            detail={"event": event_type, "event_id": new.id, "causation_id": cause.id,
                    "producer": new.producer, "consumer": new.consumer,
                    "phase": reaction.kind, "outcome": outcome},
            **changes)

    async def _settle_reaction(self, reaction: Reaction,
                               failure: Failure) -> Outcome | None:
        """A handler whose outcome is unknown is settled by its participant before anything
        is published: applied, its recorded output (the saga goes on); not applied, fenced
        so that it never will. Unknowable past the retry budget: STUCK (None)."""
        answer = await self._settle(
            reaction.participant, reaction.step, reaction.timeout_s, reaction.retry,
            f"{reaction.name!r}", failure.error, failure.error_type)
        if answer is None:
            return None
        if answer.get("applied"):
            return answer.get("output") or {}, None
        return {}, failure.settled_not_applied()

    # --- one reaction, with retries ---------------------------------------------------

    async def _call_with_retries(self, event: BusEvent, reaction: Reaction) -> Outcome:
        """``reaction``'s handler call through the runner's retry loop, within the
        reaction's deadline (counted from the event it reacts to)."""
        rec = self.record
        kind, step = reaction.kind, reaction.step
        resuming = rec.current_step == step and rec.phase == kind
        deadline = event.at + reaction.deadline_s if reaction.deadline_s else None

        def stop(attempt: int, resend: bool) -> Failure | None:
            if deadline is not None and self._clock.now() >= deadline:
                return Failure.past_deadline(
                    "ReactionTimedOut", f"no {reaction.publishes} within "
                    f"{reaction.deadline_s:g}s", uncertain=attempt > 0)
            if kind == "action" and attempt:
                return self._halted(uncertain=resend or self._in_doubt(reaction))
            return None

        return await self._with_retries(Call(
            step=step, kind=kind, policy=reaction.retry,
            attempt=rec.attempt if resuming else 0, resend=resuming and rec.in_flight,
            send=lambda attempt: self._attempt(event, reaction, attempt, deadline),
            stop=stop, failed_changes=lambda attempt: {"in_flight": False},
            sent_changes=lambda attempt: {"current_step": step, "phase": kind,
                                          "attempt": attempt, "in_flight": True}))

    async def _attempt(self, event: BusEvent, reaction: Reaction, attempt: int,
                       deadline: float | None) -> Outcome:
        rec = self.record
        request = StepRequest.model_construct(
            saga_id=rec.saga_id, saga_type=rec.saga_type, version=rec.version,
            step=reaction.step, kind=reaction.kind, method=reaction.handler, attempt=attempt,
            data=event.payload, action_output=None, event=event.type)
        timeout = reaction.timeout_s
        if deadline is not None:
            timeout = max(0.001, min(timeout, deadline - self._clock.now()))

        def timed_out(exc: Exception) -> Failure | None:
            if deadline is None or self._clock.now() < deadline:
                return None
            return Failure.past_deadline(type(exc).__name__, str(exc), uncertain=True)

        return await self._send(reaction.participant, request, timeout, reaction.retry,
                                stoppable=True, timed_out=timed_out)

    # --- helpers --------------------------------------------------------------------

    def _current(self) -> Reaction | None:
        rec = self.record
        if rec.cursor >= len(rec.events):
            return None
        return self.definition.reaction_on(rec.events[rec.cursor].type)

    def _in_doubt(self, reaction: Reaction) -> bool:
        rec = self.record
        return reaction.step in rec.uncertain or (
            rec.in_flight and rec.current_step == reaction.step and rec.phase == "action")

    def _abort_reason(self) -> str | None:
        rec = self.record
        if rec.status is SagaStatus.COMPENSATING or rec.status.terminal:
            return None
        reaction = self._current()
        if reaction is None or reaction.kind != "action" or not reaction.failure:
            return None  # nothing declared to publish: it goes on
        if rec.cancel_reason:
            return f"cancelled: {rec.cancel_reason}"
        if rec.deadline_at is not None and self._clock.now() >= rec.deadline_at:
            return f"deadline of {self.definition.deadline_s:g}s exceeded"
        return None


def _consumer(c: Choreography, event_type: str) -> str | None:
    reaction = c.reaction_on(event_type)
    return f"{reaction.participant}.{reaction.handler}" if reaction else None
