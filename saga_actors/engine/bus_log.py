"""A choreographed saga's event log, read against its definition: which reactions are due,
which have run, what the saga waits for. Pure functions of the log; no Ray, no I/O.

Each event in the log names the reaction that published it. A reaction is due once all of
its events are in the log (one, or every event of a join) and it has not run; it runs
once, on the first event of each type. An event from outside is in the log from the moment
the bus took it, whenever it came.
"""

from __future__ import annotations

import uuid
from typing import Any

from saga_actors.model.choreography import Choreography, Reaction
from saga_actors.model.records import BusEvent, Expect, SagaRecord
from saga_actors.model.state import SagaStatus

_IDS = uuid.UUID("6f0c7c8e-2a52-4c8e-9a57-0b8f6f1d6a11")  # namespace of derived event ids


def event_id(saga_id: str, causation_id: str | None, reaction: str, event_type: str) -> str:
    """The id of an event: the same whenever the same cause leads to it again."""
    return str(uuid.uuid5(_IDS, f"{saga_id}/{causation_id}/{reaction}/{event_type}"))


def consumer(c: Choreography, event_type: str) -> str | None:
    """Who reacts to ``event_type``: ``participant.handler`` (a fan-out: each, by commas)."""
    found = [f"{r.participant}.{r.handler}" for r in c.reactions_on(event_type)]
    return ", ".join(found) or None


def start_event(c: Choreography, saga_id: str, payload: dict[str, Any], now: float) -> BusEvent:
    """The event that starts a saga: its input."""
    return BusEvent(id=event_id(saga_id, None, "start", c.start), saga_id=saga_id,
                    version=c.version, type=c.start, payload=payload, producer="start",
                    consumer=consumer(c, c.start), at=now)


def outside_event(c: Choreography, saga_id: str, event_type: str, payload: dict[str, Any],
                  sender_id: str, at: float) -> BusEvent:
    """An event from outside, as it enters the log (its id derived from the sender's)."""
    return BusEvent(id=event_id(saga_id, f"external:{sender_id}", "external", event_type),
                    saga_id=saga_id, version=c.version, type=event_type, payload=payload,
                    producer="external", consumer=consumer(c, event_type),
                    external_id=sender_id, at=at)


def first_of_each(events: list[BusEvent]) -> dict[str, BusEvent]:
    out: dict[str, BusEvent] = {}
    for e in events:
        out.setdefault(e.type, e)
    return out


def reacted(c: Choreography, events: list[BusEvent]) -> set[str]:
    """The reactions whose outcome (the event they published) is in the log."""
    out = {e.reaction for e in events if e.reaction}
    by_id = {e.id: e for e in events}
    for e in events:  # a log written before events named their reaction
        if e.reaction is None and e.causation_id in by_id:
            cause = by_id[e.causation_id].type
            out |= {r.name for r in c.reactions_on(cause)
                    if f"{r.participant}.{r.handler}" == e.producer}
    return out


def due(c: Choreography, events: list[BusEvent], busy: set[str]) -> list[
        tuple[Reaction, list[BusEvent]]]:
    """The forward reactions that can run now, each with the events it reacts to."""
    first, done = first_of_each(events), reacted(c, events)
    out = []
    for r in c.reactions:
        if r.kind == "action" and r.name not in done and r.name not in busy and all(
                t in first for t in r.triggers):
            out.append((r, [first[t] for t in r.triggers]))
    return out


def waiting(c: Choreography, record: SagaRecord) -> list[Expect]:
    """What the saga waits for that no reaction under way will publish: the rest of each
    join that has some of its events, and events from outside."""
    events = record.events
    first, done, outside = first_of_each(events), reacted(c, events), c.external()
    out = []
    for r in c.reactions:
        if r.kind != "action" or r.name in done:
            continue
        have = [t for t in r.triggers if t in first]
        missing = [t for t in r.triggers if t not in first]
        from_outside = [t for t in missing if t in outside]
        if not missing or not (have or from_outside):
            continue
        if not have and len(from_outside) < len(missing):
            continue  # nothing of it came yet and some of it comes from reactions
        fields = {outside[t] for t in from_outside if outside[t]}
        since = min((first[t].at for t in have), default=events[-1].at if events else 0.0)
        out.append(Expect(
            reaction=r.name, waits_for=missing, has=have if r.on_all else [],
            external=from_outside,
            correlation=", ".join(f"{f}={record.input.get(f)}" for f in sorted(fields)) or None,
            since=since, deadline_s=r.deadline_s if r.on_all else None,
            timeout_event=r.timeout_event if r.on_all else None))
    return out


def data_of(events: list[BusEvent]) -> dict[str, Any]:
    """The payloads of ``events``, merged in order: what a reaction sees (a join: every one
    of its events'); of the whole log, everything the saga knows."""
    out: dict[str, Any] = {}
    for e in events:
        out.update(e.payload)
    return out


def awaiting_text(c: Choreography, running: list[Reaction], expects: list[Expect]) -> str | None:
    """"PaymentProcessed from payment; next expected: ShipmentCreated", or what a join or
    an event from outside still needs."""
    head = " and ".join(f"{r.publishes} from {r.participant}" for r in running)
    if len(running) == 1 and running[0].publishes:
        after = c.reaction_on(running[0].publishes)
        if after is not None and after.publishes and not after.on_all:
            head += f"; next expected: {after.publishes}"
    rest = [x.text() for x in expects]
    return "; ".join(p for p in [head, *rest] if p) or None


def track(c: Choreography, events: list[BusEvent]) -> SagaStatus:
    """A choreographed saga's state, derived from its events against the declared graph:
    a success terminal event COMPLETED, a failure terminal event (after a failure)
    FAILED, any failure or timeout event COMPENSATING, else PENDING (STARTED: only the
    start event). STUCK is not an event: the bus parks a saga."""
    if not events:
        return SagaStatus.STARTED
    failed = c.failure_events()
    if any(e.type in failed for e in events):
        return SagaStatus.FAILED if events[-1].type in c.fails_on else SagaStatus.COMPENSATING
    if events[-1].type in c.completes_on:
        return SagaStatus.COMPLETED
    return SagaStatus.STARTED if len(events) == 1 else SagaStatus.PENDING
