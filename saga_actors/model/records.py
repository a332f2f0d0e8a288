"""What the journal stores: a saga's snapshot and its transitions, as JSON via pydantic."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from saga_actors.constants import POOLED, pool_actor_name, saga_actor_name, shard_of
from saga_actors.model.events import Event
from saga_actors.model.state import SagaStatus

Phase = Literal["action", "compensation"]


class BusEvent(BaseModel):
    """One event in a choreographed saga's log."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The same when the handler that published it runs again.")
    saga_id: str = Field("", description="Its saga (the correlation id).")
    type: str
    version: int = Field(1, description="Of the choreography that declares it (its schema).")
    payload: dict[str, Any] = Field(default_factory=dict)
    causation_id: str | None = Field(None, description="The event whose handling made it.")
    producer: str | None = Field(None, description="participant.handler, or who started it.")
    consumer: str | None = Field(None, description="participant.handler that reacts to it.")
    reaction: str | None = Field(None, description="The reaction that published it (none: "
                                 "the start event, or one from outside).")
    external_id: str | None = Field(None, description="An event from outside: the id its "
                                    "sender gave it (the same id sent again is taken once).")
    at: float = 0.0


class Expect(BaseModel):
    """What a running choreographed saga waits for: an event from outside, or the rest of a
    join's events (``rt.get(...).expects``, ``saga-actors show``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reaction: str = Field(description="The reaction that waits.")
    waits_for: list[str] = Field(description="The events it still needs.")
    has: list[str] = Field(default_factory=list, description="A join: the events it has.")
    external: list[str] = Field(default_factory=list,
                                description="Of those it needs, the ones from outside.")
    correlation: str | None = Field(None, description="How an outside event finds the saga: "
                                    "`order_id=o-42`.")
    since: float = Field(description="When it started to wait (a join: its first event).")
    deadline_s: float | None = Field(None, description="Its deadline, from `since`.")
    timeout_event: str | None = None

    def text(self, now: float | None = None) -> str:
        """"PaymentCaptured (external, correlated by order_id=o-42) for 3 min of 15" or
        "join 'ship' has InventoryReserved, waits for PaymentAuthorized"."""
        names = []
        for event in self.waits_for:
            if event in self.external:
                how = f", correlated by {self.correlation}" if self.correlation else ""
                names.append(f"{event} (external{how})")
            else:
                names.append(event)
        text = " and ".join(names)
        if self.has:
            text = f"join {self.reaction!r} has {', '.join(self.has)}, waits for {text}"
        if now is not None:
            text += f" for {_span(now - self.since)}"
            if self.deadline_s is not None:
                text += f" of {_span(self.deadline_s)}"
        elif self.deadline_s is not None:
            text += f" (within {_span(self.deadline_s)}, else {self.timeout_event})"
        return text


def awaited_apart(awaiting: str | None, expects: list[Expect]) -> str:
    """``awaiting`` without the ``expects`` it also says (which a view says apart, each
    with how long it has waited): the reactions under way."""
    text = awaiting or ""
    for x in expects:
        text = text.replace(x.text(), "")
    return "; ".join(p for p in text.split("; ") if p.strip())


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Branch(BaseModel):
    """Where one step of a running parallel group stands (like a lone step's ``attempt``,
    ``in_flight`` and ``wait_until`` on the record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt: int = 0
    in_flight: bool = False
    until: float | None = Field(None, description="A wait step: when its wait times out.")


class SagaRecord(BaseModel):
    """The latest state of one saga; enough to resume it after any crash."""

    model_config = ConfigDict(extra="forbid")

    saga_id: str
    saga_type: str
    version: int = 1
    shape: str | None = Field(None, description="Hash of the definition's shape it was "
                              "started with (saga_actors.model.shapes); recovery needs the same.")
    placement: str = "dedicated"
    parent_id: str | None = Field(None, description="A child saga: its parent, which runs it "
                                  "(its id is ``<parent_id>/<step>``).")
    definition_ref: str | None = Field(None, description="module:attr to import the definition")
    pivot: str | None = Field(None, description="Its pivot step, if any: past it the saga only "
                              "goes forward.")
    child_versions: dict[str, int] = Field(
        default_factory=dict, description="Version of each saga type its child steps run "
        "(pinned when the root saga started).")
    status: SagaStatus = SagaStatus.STARTED
    seq: int = Field(0, description="Number of the last journaled transition.")
    input: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict, description="Input plus step outputs.")
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cursor: int = Field(0, description="Index of the next forward step.")
    current_step: str | None = None
    phase: Phase | None = None
    attempt: int = 0
    in_flight: bool = Field(False, description="A call was sent and its outcome not journaled.")
    branches: dict[str, Branch] = Field(
        default_factory=dict, description="A parallel group under way: each unfinished step.")
    wait_until: float | None = Field(None, description="A wait step under way: its timeout.")
    signals_taken: list[str] = Field(default_factory=list,
                                     description="Ids of the signals its waits took.")
    uncertain: list[str] = Field(
        default_factory=list, description="Steps whose action outcome is unknown (timeout, crash)."
    )
    completed: list[str] = Field(default_factory=list, description="Forward steps done, in order.")
    to_compensate: list[str] = Field(default_factory=list, description="Next compensation first.")
    compensated: list[str] = Field(default_factory=list, description="In the order compensated.")
    error: str | None = None
    stuck_from: SagaStatus | None = Field(None, description="Where a retry resumes a STUCK saga.")
    restarts: int = Field(0, description="Times the supervisor restarted a lost actor.")
    cancel_reason: str | None = None
    waiting_for: str | None = Field(
        None, description="Set while no process has the saga's definition (it waits, visibly)."
    )
    events: list[BusEvent] = Field(
        default_factory=list, description="A choreographed saga's event log, in order.")
    awaiting: str | None = Field(
        None, description="A choreographed saga: the event it waits for, from whom.")
    expects: list[Expect] = Field(
        default_factory=list, description="A choreographed saga: the events from outside and "
        "the rest of the joins it waits for.")
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    deadline_at: float | None = None

    def updated(self, **changes: Any) -> SagaRecord:
        """A copy with ``changes``: a misspelled field raises instead of being journaled.
        The engine gives each field its own type (records are validated where they come
        in: from the journal, from a caller); with ``SAGA_ACTORS_STRICT_RECORDS=1`` (the
        test suite) each change is validated too, and one that pydantic would have to
        coerce raises."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"SagaRecord has no field {sorted(unknown)}")
        if STRICT_RECORDS:
            _check_changes(self, changes)
        return self.model_copy(update=changes)


class Signal(BaseModel):
    """An outside event sent to one saga (:meth:`SagaRuntime.signal`), kept in the journal
    until a wait step takes it."""

    model_config = ConfigDict(extra="forbid")

    saga_id: str
    signal_id: str = Field(description="Sending the same id again is the same signal.")
    name: str
    payload: dict[str, Any] = Field(default_factory=dict)
    at: float = 0.0


class Transition(BaseModel):
    """One journaled event in a saga's history."""

    model_config = ConfigDict(extra="forbid")

    saga_id: str
    seq: int
    at: float
    event: Event
    status: SagaStatus
    step: str | None = None
    attempt: int = 0
    detail: dict[str, Any] = Field(default_factory=dict)


_FIELDS = frozenset(SagaRecord.model_fields)
_VALIDATOR = SagaRecord.__pydantic_validator__
STRICT_RECORDS = os.environ.get("SAGA_ACTORS_STRICT_RECORDS") == "1"


def _check_changes(record: SagaRecord, changes: dict[str, Any]) -> None:
    """Each change, validated as a field of ``record``: it must already be what pydantic
    makes of it (same value, same type)."""
    new = record.model_copy()
    for name, value in changes.items():
        _VALIDATOR.validate_assignment(new, name, value)
        valid = getattr(new, name)
        if type(valid) is not type(value) or valid != value:
            raise TypeError(f"SagaRecord.{name}: {value!r} is not of its type "
                            f"(validated: {valid!r})")


def runner_name(record: SagaRecord, hosts: int) -> str:
    """The Ray actor that runs the saga: ``saga:<id>``, or its ``saga_actors:host:<i>`` (a
    child saga: its root parent's)."""
    root = record.saga_id.split("/", 1)[0] if record.parent_id else record.saga_id
    if record.placement in POOLED:
        return pool_actor_name(record.placement, shard_of(root, hosts))
    return saga_actor_name(root)


def first_transitions(record: SagaRecord) -> list[Transition]:
    """The transitions journaled with a new saga: its start, and when the record opens with
    its first action sent (:func:`~saga_actors.engine.admission.opened`), that send."""
    first = first_transition(record)
    if not as_admitted(record) or record.seq == 0:
        return [first]
    return [first, Transition.model_construct(
        saga_id=record.saga_id, seq=1, at=record.created_at, event=Event.ACTION_SENT,
        status=record.status, step=record.current_step, attempt=1, detail={})]


def as_admitted(record: SagaRecord) -> bool:
    """Whether ``record`` may still be as its admission journaled it: its start alone, or
    with its first send (same instant, nothing since)."""
    return record.seq == 0 or (record.seq == 1 and record.in_flight
                               and record.updated_at == record.created_at)


def first_transition(record: SagaRecord) -> Transition:
    """The ``saga_started`` transition journaled with a new saga."""
    return Transition(
        saga_id=record.saga_id,
        seq=0,
        at=record.created_at,
        event=Event.SAGA_STARTED,
        status=SagaStatus.STARTED,
        detail={"saga_type": record.saga_type, "version": record.version},
    )
