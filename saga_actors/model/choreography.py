"""Choreographed sagas as data: events, reactions, terminal events; the flow graph is
checked when the definition is built (:mod:`saga_actors.model.flow`). No Ray.

There is no coordinator in the definition: each :class:`Reaction` says "on event E (or
once all of events E1, E2... came: a join), participant P runs handler H, and publishes
event X (or, failing for good, event F)". Several reactions on one event run side by side
(a fan-out). Compensating reactions undo an earlier reaction's effect after a failure
event. Events marked ``external`` enter a running saga from outside (a webhook). The bus
(:mod:`saga_actors.engine.choreography`) delivers each saga's events in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from saga_actors.model.definition import RetryPolicy, _Data
from saga_actors.model.validation import validation_brief

Phase = Literal["action", "compensation"]
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Reaction(_Data):
    """On event ``on``, ``participant`` runs ``handler`` and publishes ``publishes``; if
    it fails for good, ``failure`` is published instead. A compensating reaction
    (``compensates``) undoes the effect of the reaction named so."""

    on: str = Field("", description="The event type it reacts to (or `on_all`).")
    on_all: tuple[str, ...] = Field((), description="A join: it runs once, when every one "
                                    "of these events came, and sees all their payloads.")
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
                                      "handler is fenced: its effect never lands). A "
                                      "join's deadline counts from the first of its events.")

    @model_validator(mode="after")
    def _shape(self) -> Reaction:
        if not self.name:
            object.__setattr__(self, "name", self.handler)
        if bool(self.on) == bool(self.on_all):
            raise ValueError(f"reaction {self.name!r}: give one of on= (an event) or on_all= "
                             "(a join of events)")
        if self.on_all and (len(set(self.on_all)) < 2 or len(set(self.on_all)) != len(
                self.on_all)):
            raise ValueError(f"reaction {self.name!r}: a join (on_all) waits for two or more "
                             f"different events, not {list(self.on_all)}")
        if self.on_all and self.compensates:
            raise ValueError(f"reaction {self.name!r}: a compensating reaction reacts to one "
                             "failure event (on=), not a join")
        if (self.deadline_s is None) != (self.timeout_event is None):
            raise ValueError(f"reaction {self.name!r}: deadline_s and timeout_event go together")
        return self

    @property
    def triggers(self) -> tuple[str, ...]:
        """The events it waits for: ``(on,)``, or a join's ``on_all``."""
        return self.on_all or (self.on,)

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
    # indexes, made again when the definition is copied with other events or reactions
    _index: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _graph(self) -> Choreography:
        from saga_actors.model.flow import check_graph

        check_graph(self)
        return self

    def _indexes(self) -> tuple[dict[str, str | None], dict[str, list[Reaction]], bool]:
        """(events from outside -> correlation field, event -> its reactions, whether it
        waits: :attr:`waits`)."""
        index = self._index
        if index is None or index[0] is not self.events or index[1] is not self.reactions:
            outside = {m.__name__: getattr(m, "correlate_by", None) for m in self.events
                       if getattr(m, "external", False) is True}
            on: dict[str, list[Reaction]] = {}
            for r in self.reactions:
                for event in r.triggers:
                    on.setdefault(event, []).append(r)
            waits = bool(outside) or any(r.on_all for r in self.reactions)
            index = self._index = (self.events, self.reactions, outside, on, waits)
        return index[2], index[3], index[4]

    @property
    def waits(self) -> bool:
        """Whether a saga of it can wait for something no reaction under way publishes: a
        join, or an event from outside."""
        return self._indexes()[2]

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
        """The first reaction to ``event_type`` (alone or in a join), if any."""
        found = self._indexes()[1].get(event_type)
        return found[0] if found else None

    def reactions_on(self, event_type: str) -> list[Reaction]:
        """Every reaction that waits for ``event_type`` (a fan-out has several)."""
        return list(self._indexes()[1].get(event_type, ()))

    def external(self) -> dict[str, str | None]:
        """The events that enter a running saga from outside (their model says
        ``external = True``), each with the field it is correlated by, if any."""
        return dict(self._indexes()[0])

    def compensation_for(self, step: str, failure_event: str) -> Reaction | None:
        """The compensating reaction that undoes ``step`` after ``failure_event``: the one
        nearest to it on the events that follow it (the graph check makes sure there is one
        for every step with a compensation that may have completed)."""
        from saga_actors.model.flow import reachable_from

        for name in reachable_from(self, failure_event):
            r = self.reaction(name)
            if r.compensates == step:
                return r
        return None

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


def event_payload(c: Choreography, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Check ``payload`` against the event's model (extra keys are the saga's data and stay);
    raises ValueError saying what is wrong."""
    try:
        c.event_model(event_type).model_validate(payload)
    except ValidationError as exc:
        raise ValueError(f"{event_type}: {validation_brief(exc)}") from None
    return payload
