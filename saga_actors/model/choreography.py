"""Choreographed sagas as data: events, reactions, terminal events; the flow graph is
checked when the definition is built. No Ray.

There is no coordinator in the definition: each :class:`Reaction` says "on event E,
participant P runs handler H, and publishes event X (or, failing for good, event F)".
Compensating reactions undo an earlier reaction's effect when a failure event reaches
them. The bus (:mod:`saga_actors.engine.choreography`) delivers each saga's events in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from saga_actors.model.definition import RetryPolicy, _Data
from saga_actors.model.validation import validation_brief

Phase = Literal["action", "compensation"]
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Reaction(_Data):
    """On event ``on``, ``participant`` runs ``handler`` and publishes ``publishes``; if
    it fails for good, ``failure`` is published instead. A compensating reaction
    (``compensates``) undoes the effect of the reaction named so."""

    on: str = Field(description="The event type it reacts to.")
    participant: str = Field(min_length=1, description="Name of the participant actor.")
    handler: str = Field(pattern=_NAME, description="The participant's method: an @action, "
                         "or for a compensating reaction the @compensation of the action.")
    name: str = Field("", description="The step it is, for people and idempotency keys; "
                      "defaults to the handler.")
    publishes: str | None = Field(None, description="Event published when it succeeds.")
    failure: str | None = Field(None, description="Event published when it fails for good "
                                "(none: the saga is parked STUCK with the event).")
    compensates: str | None = Field(None, description="The reaction whose effect this undoes.")
    timeout_s: float = Field(10.0, gt=0, description="Per attempt; the call is cancelled.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="For the handler.")
    deadline_s: float | None = Field(None, gt=0, description="The event it leads to must come "
                                     "within this; else `timeout_event` is published.")
    timeout_event: str | None = Field(None, description="Published past `deadline_s` (the late "
                                      "handler is fenced: its effect never lands).")

    @model_validator(mode="after")
    def _shape(self) -> Reaction:
        if not self.name:
            object.__setattr__(self, "name", self.handler)
        if (self.deadline_s is None) != (self.timeout_event is None):
            raise ValueError(f"reaction {self.name!r}: deadline_s and timeout_event go together")
        return self

    @property
    def kind(self) -> Phase:
        return "compensation" if self.compensates else "action"

    @property
    def action(self) -> str:
        """The participant method it calls (as ``Step.action``)."""
        return self.handler

    @property
    def step(self) -> str:
        """The step of its idempotency key: a compensating reaction shares its action's."""
        return self.compensates or self.name

    @property
    def compensation_retry(self) -> RetryPolicy:
        return self.retry

    @property
    def child(self) -> None:
        """A reaction never runs a child saga (as ``Step.child``)."""
        return None

    def policy(self, phase: str) -> RetryPolicy:
        return self.retry

    def emits(self) -> list[str]:
        """Every event it may publish."""
        return [e for e in (self.publishes, self.failure, self.timeout_event) if e]


class Choreography(_Data):
    """A choreographed saga type: its events (pydantic models, named by class), the start
    event, the reactions, and the terminal events."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", description="The saga type.")
    version: int = Field(1, ge=1, description="Bumped when the flow changes.")
    events: tuple[type[BaseModel], ...] = Field(min_length=1, description="Its event models.")
    start: str = Field(description="The event that starts a saga (its input).")
    reactions: tuple[Reaction, ...] = Field(min_length=1, description="Who reacts to what.")
    completes_on: tuple[str, ...] = Field(min_length=1, description="Success: COMPLETED.")
    fails_on: tuple[str, ...] = Field((), description="A finished compensation: FAILED.")
    deadline_s: float | None = Field(None, gt=0, description="Whole-saga time limit.")
    placement: Literal["choreography"] = "choreography"

    @model_validator(mode="after")
    def _graph(self) -> Choreography:
        check_graph(self)
        return self

    # --- what the runtime and the bus ask ------------------------------------------

    @property
    def input_model(self) -> type[BaseModel]:
        """The start event's model: a saga's input."""
        return self.event_model(self.start)

    def event_model(self, event_type: str) -> type[BaseModel]:
        for model in self.events:
            if model.__name__ == event_type:
                return model
        raise KeyError(event_type)

    def event_types(self) -> list[str]:
        return [m.__name__ for m in self.events]

    def reaction_on(self, event_type: str) -> Reaction | None:
        """The reaction to ``event_type`` (there is at most one), if any."""
        return next((r for r in self.reactions if r.on == event_type), None)

    def reaction(self, name: str) -> Reaction:
        for r in self.reactions:
            if r.name == name:
                return r
        raise KeyError(name)

    def step(self, name: str) -> Reaction:
        """The reaction whose step is ``name`` (its forward reaction first); for the
        supervisor's stall limits."""
        found = [r for r in self.reactions if r.step == name]
        if not found:
            raise KeyError(name)
        return next((r for r in found if r.kind == "action"), found[0])

    def group(self, name: str) -> tuple[Reaction, ...]:
        """No parallel groups in a choreography (the orchestrated saga's API)."""
        return ()

    def signals(self) -> dict[str, Reaction]:
        """No wait steps in a choreography: it takes no signal (the orchestrated saga's
        API)."""
        return {}

    def failure_events(self) -> set[str]:
        """Events that say a reaction failed or timed out: they start compensation."""
        return {e for r in self.reactions for e in (r.failure, r.timeout_event) if e}

    def past_pivot(self, completed: Iterable[str]) -> bool:
        return False  # a choreography has no pivot: any failure compensates

    @property
    def steps(self) -> tuple[Reaction, ...]:
        return self.reactions

    def roles(self) -> dict[str, set[tuple[str, str]]]:
        """Participant name -> (handler, ``action`` or ``compensation``) it is called as."""
        out: dict[str, set[tuple[str, str]]] = {}
        for r in self.reactions:
            out.setdefault(r.participant, set()).add((r.handler, r.kind))
        return out

    @property
    def participants(self) -> dict[str, set[str]]:
        """Participant name -> the handlers this choreography calls on it."""
        out: dict[str, set[str]] = {}
        for r in self.reactions:
            out.setdefault(r.participant, set()).add(r.handler)
        return out


def check_graph(c: Choreography) -> None:
    """Raise ValueError (a :class:`SagaDefinitionError` when the definition is built)
    naming the event or reaction that breaks the flow."""
    declared = set(c.event_types())
    if len(declared) != len(c.events):
        raise ValueError("two event models share a name")
    mentioned = [c.start, *c.completes_on, *c.fails_on,
                 *(e for r in c.reactions for e in (r.on, *r.emits()))]
    for event in mentioned:
        if event not in declared:
            raise ValueError(f"event {event!r} is not declared (events: {sorted(declared)})")
    names = [r.name for r in c.reactions]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two reactions are named {name!r}; give one a name")
    by_event: dict[str, Reaction] = {}
    for r in c.reactions:
        if r.on in by_event:
            raise ValueError(f"event {r.on!r} has two reactions ({by_event[r.on].name!r}, "
                             f"{r.name!r}); one reaction per event")
        by_event[r.on] = r
        if r.compensates and r.compensates not in names:
            raise ValueError(f"reaction {r.name!r} compensates {r.compensates!r}, which is "
                             "not a reaction")
    terminal = set(c.completes_on) | set(c.fails_on)
    for r in c.reactions:
        if r.on in terminal:
            raise ValueError(f"event {r.on!r} is terminal (its saga ends there), but "
                             f"{r.name!r} reacts to it")
    for r in c.reactions:
        if not r.publishes:
            raise ValueError(f"reaction {r.name!r} publishes nothing: its saga would never "
                             "end (set publishes=...)")
    published = {e for r in c.reactions for e in r.emits()}
    for r in c.reactions:
        if r.on != c.start and r.on not in published:
            raise ValueError(f"event {r.on!r} is consumed by {r.name!r} but neither the start "
                             "event nor published by any reaction")
    for event in published | {c.start}:
        if event not in by_event and event not in terminal:
            raise ValueError(f"event {event!r} is published but nothing consumes it and it "
                             "is not terminal")
    reachable = _reachable_reactions(c, by_event, [c.start])
    for r in c.reactions:
        if r.name not in reachable:
            raise ValueError(f"reaction {r.name!r} (on {r.on!r}) is unreachable from "
                             f"{c.start!r}")
    _check_compensations(c, by_event)


def _check_compensations(c: Choreography, by_event: dict[str, Reaction]) -> None:
    """After a reaction that has a compensation succeeded, every failure or timeout event
    further on must lead to one of its compensations."""
    undone_by: dict[str, set[str]] = {}
    for r in c.reactions:
        if r.compensates:
            undone_by.setdefault(r.compensates, set()).add(r.name)
    for r in c.reactions:
        if r.kind != "action" or r.name not in undone_by or not r.publishes:
            continue
        # after r succeeded, every failure further on must lead to r's compensation
        for later in _reachable_reactions(c, by_event, [r.publishes], success_only=True):
            reaction = c.reaction(later)
            for event in (reaction.failure, reaction.timeout_event):
                if event and not undone_by[r.name] & _reachable_reactions(
                        c, by_event, [event]):
                    raise ValueError(
                        f"failure event {event!r} (of {later!r}, after {r.name!r} succeeded) "
                        f"never leads to a compensation of {r.name!r} "
                        f"({sorted(undone_by[r.name])})")


def _reachable_reactions(c: Choreography, by_event: dict[str, Reaction], start: list[str],
                         *, success_only: bool = False) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        r = by_event.get(todo.pop())
        if r is None or r.name in seen:
            continue
        seen.add(r.name)
        todo += [r.publishes] if success_only and r.publishes else []
        if not success_only:
            todo += r.emits()
    return seen


def event_payload(c: Choreography, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Check ``payload`` against the event's model (extra keys are the saga's data and stay);
    raises ValueError saying what is wrong."""
    try:
        c.event_model(event_type).model_validate(payload)
    except ValidationError as exc:
        raise ValueError(f"{event_type}: {validation_brief(exc)}") from None
    return payload
