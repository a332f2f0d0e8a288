"""The flow graph of a choreography, checked when it is built. No Ray.

A choreography's events and reactions form a graph: a reaction waits for its event (or, a
join, for all of its events) and publishes one. :func:`check_graph` proves, before any saga
runs, that every event can happen and has a consumer, that a join's events can all come on
the way to it, that a success terminal event comes only after every parallel branch, and
that whatever failure happens, every reaction that may have completed by then (before it,
or beside it on a parallel branch) has a compensation that the failure leads to. Each broken
rule is a ValueError (a :class:`SagaDefinitionError` once built) naming the event.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saga_actors.model.choreography import Choreography


def check_graph(c: Choreography) -> None:
    """Raise ValueError naming the event or reaction that breaks the flow."""
    declared = set(c.event_types())
    if len(declared) != len(c.events):
        raise ValueError("two event models share a name")
    mentioned = [c.start, *c.completes_on, *c.fails_on,
                 *(e for r in c.reactions for e in (*r.triggers, *r.emits()))]
    for event in mentioned:
        if event not in declared:
            raise ValueError(f"event {event!r} is not declared (events: {sorted(declared)})")
    names = [r.name for r in c.reactions]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two reactions are named {name!r}; give one a name")
    _check_external(c)
    _check_each_reaction(c, names)
    _check_events_flow(c)
    _check_joins(c)
    _check_compensations(c)
    _check_completion(c)


def _check_external(c: Choreography) -> None:
    for model in c.events:
        for name in ("external", "correlate_by"):
            if name in model.model_fields:
                raise ValueError(f"event {model.__name__!r} has a field {name!r}: to declare "
                                 f"it, write `{name}: ClassVar[...] = ...` on the model")
    published = {e for r in c.reactions for e in r.emits()}
    fields = c.input_model.model_fields
    for event, field in c.external().items():
        if event == c.start:
            raise ValueError(f"event {event!r} is the start event: it is always published "
                             "from outside (external=True is for events of a running saga)")
        if event in published:
            raise ValueError(f"event {event!r} is external, but a reaction publishes it")
        if event in c.completes_on or event in c.fails_on:
            raise ValueError(f"event {event!r} is external: a reaction must take it (it "
                             "cannot end the saga by itself)")
        for r in c.reactions_on(event):
            if r.deadline_s is not None and not r.on_all:
                raise ValueError(
                    f"reaction {r.name!r} reacts to {event!r}, an event from outside, with a "
                    "deadline: it would count from the event's arrival. The window for an "
                    f"event from outside is a join's: on_all=(<the event it follows>, "
                    f"{event!r}), counted from the first")
        if field is not None and (field not in c.event_model(event).model_fields
                                  or field not in fields):
            raise ValueError(f"event {event!r} is correlated by {field!r}, which must be a "
                             f"field of both {event!r} and the start event {c.start!r}")


def _check_each_reaction(c: Choreography, names: list[str]) -> None:
    terminal = set(c.completes_on) | set(c.fails_on)
    undoing: dict[tuple[str, str], str] = {}
    for r in c.reactions:
        if r.compensates and r.compensates not in names:
            raise ValueError(f"reaction {r.name!r} compensates {r.compensates!r}, which is "
                             "not a reaction")
        for event in r.triggers:
            if event in terminal:
                raise ValueError(f"event {event!r} is terminal (its saga ends there), but "
                                 f"{r.name!r} reacts to it")
        if not r.publishes:
            raise ValueError(f"reaction {r.name!r} publishes nothing: its saga would never "
                             "end (set publishes=...)")
        if r.compensates:
            other = undoing.setdefault((r.on, r.compensates), r.name)
            if other != r.name:
                raise ValueError(f"event {r.on!r} has two compensations of {r.compensates!r} "
                                 f"({other!r}, {r.name!r}): one is run, so keep one")


def _check_events_flow(c: Choreography) -> None:
    terminal = set(c.completes_on) | set(c.fails_on)
    published = {e for r in c.reactions for e in r.emits()}
    sources = {c.start, *c.external()}
    consumed = {e for r in c.reactions for e in r.triggers}
    for r in c.reactions:
        for event in r.triggers:
            if event not in sources and event not in published:
                raise ValueError(f"event {event!r} is consumed by {r.name!r} but neither the "
                                 "start event nor published by any reaction (nor external)")
    for event in published | sources:
        if event not in consumed and event not in terminal:
            raise ValueError(f"event {event!r} is published but nothing consumes it and it "
                             "is not terminal")
    _, reached = _fixed_point(c, success_only=False)
    for r in c.reactions:
        if r.name not in reached:
            raise ValueError(f"reaction {r.name!r} (on {'+'.join(r.triggers)!r}) is "
                             f"unreachable from {c.start!r}")


def _check_joins(c: Choreography) -> None:
    events, _ = _fixed_point(c, success_only=True)
    for r in c.reactions:
        if not r.on_all:
            continue
        missing = [e for e in r.on_all if e not in events]
        if missing:
            raise ValueError(f"join {r.name!r} waits for {missing[0]!r}, which cannot happen "
                             f"on the way to it (a join's events must all come when the saga "
                             f"goes forward: the start, external events, or what its forward "
                             f"reactions publish when they succeed)")


def _check_compensations(c: Choreography) -> None:
    """Whatever failure happens, every reaction that may have completed by then (before
    it, or on a parallel branch) and has a compensation must be undone by one the failure
    leads to."""
    undone_by: dict[str, set[str]] = {}
    for r in c.reactions:
        if r.compensates:
            undone_by.setdefault(r.compensates, set()).add(r.name)
    before = _necessarily_before(c)
    forward = [r for r in c.reactions if r.kind == "action"]
    for failing in forward:
        for event in (failing.failure, failing.timeout_event):
            if not event:
                continue
            reached = set(reachable_from(c, event))
            for done in forward:
                if done.name == failing.name or done.name not in undone_by:
                    continue
                if failing.name in before.get(done.name, set()):
                    continue  # it comes after the failing reaction: never completed yet
                if not undone_by[done.name] & reached:
                    where = ("on a parallel branch" if done.name not in before.get(
                        failing.name, set()) else "before it")
                    raise ValueError(
                        f"failure event {event!r} (of {failing.name!r}) never leads to a "
                        f"compensation of {done.name!r}, which may have completed {where} "
                        f"({sorted(undone_by[done.name])})")
    failures = c.failure_events()
    for r in forward:
        if any(e in failures for e in r.triggers):
            raise ValueError(f"reaction {r.name!r} reacts to failure event "
                             f"{next(e for e in r.triggers if e in failures)!r} but "
                             "compensates nothing: after a failure only compensating "
                             "reactions run (set compensates=...)")


def _check_completion(c: Choreography) -> None:
    """A success terminal event comes only once every forward reaction has finished: the
    parallel branches join before it."""
    before = _events_before(c)
    _, reached = _fixed_point(c, success_only=True)
    forward = {r.name for r in c.reactions if r.kind == "action" and r.name in reached}
    for event in c.completes_on:
        if event not in before:
            continue
        left = sorted(forward - before[event])
        if left:
            raise ValueError(f"success event {event!r} can come while reaction {left[0]!r} "
                             "has not finished (a parallel branch): join the branches "
                             "(on_all=...) before it")


def reachable_from(c: Choreography, event: str) -> list[str]:
    """The reactions an event leads to, nearest first (joins as soon as one of their
    events is reached: for compensations, which react to one event)."""
    out: list[str] = []
    todo, seen = deque([event]), {event}
    while todo:
        current = todo.popleft()
        for r in c.reactions:
            if current in r.triggers and r.name not in out:
                out.append(r.name)
                for nxt in r.emits():
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
    return out


def _fixed_point(c: Choreography, *, success_only: bool) -> tuple[set[str], set[str]]:
    """The events that can happen and the reactions that can run, from the start event
    and the external ones; a join runs once all its events can happen. ``success_only``:
    forward reactions that succeed (the way a saga goes when nothing fails)."""
    events = {c.start, *c.external()}
    ran: set[str] = set()
    grown = True
    while grown:
        grown = False
        for r in c.reactions:
            if r.name in ran or (success_only and r.kind != "action"):
                continue
            if all(e in events for e in r.triggers):
                ran.add(r.name)
                new = {r.publishes} if success_only else set(r.emits())
                events |= {e for e in new if e}
                grown = True
    return events, ran


def _events_before(c: Choreography) -> dict[str, set[str]]:
    """For each event that can happen when the saga goes forward: the forward reactions
    that have certainly finished when it comes."""
    anc: dict[str, set[str]] = {c.start: set(), **{e: set() for e in c.external()}}
    for _ in range(len(c.reactions) + 2):
        changed = False
        for r in c.reactions:
            if r.kind != "action" or not r.publishes or not all(t in anc for t in r.triggers):
                continue
            before = set().union(*(anc[t] for t in r.triggers)) | {r.name}
            now = before if r.publishes not in anc else anc[r.publishes] & before
            if anc.get(r.publishes) != now:
                anc[r.publishes], changed = now, True
        if not changed:
            break
    return anc


def _necessarily_before(c: Choreography) -> dict[str, set[str]]:
    """For each forward reaction: the forward reactions that have certainly finished when
    it starts."""
    anc = _events_before(c)
    return {r.name: set().union(*(anc.get(t, set()) for t in r.triggers))
            for r in c.reactions if r.kind == "action"}
