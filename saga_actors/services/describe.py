"""One saga as ``saga-actors show``, the console and ``rt.describe`` present it: its entry,
the actor that runs it, its steps (both styles' rows from its history), what it waits for
and its full history. No Ray."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord, Transition, runner_name
from saga_actors.model.state import SagaStatus


class RegistryEntry(BaseModel):
    """What the registry knows of one saga."""

    saga_id: str
    saga_type: str
    status: SagaStatus
    placement: str
    current_step: str | None
    attempt: int
    restarts: int
    seq: int
    created_at: float
    updated_at: float
    finished_at: float | None
    error: str | None
    waiting_for: str | None = None

    @classmethod
    def of(cls, record: SagaRecord) -> RegistryEntry:
        return cls(**{name: getattr(record, name) for name in cls.model_fields})

    @classmethod
    def json_of(cls, record: SagaRecord) -> dict[str, Any]:
        """``of(record).model_dump(mode="json")``, straight from the record's own typed
        fields (no model built: the registry feed's hot path, and every list of entries)."""
        out = {name: getattr(record, name) for name in cls.model_fields}
        out["status"] = record.status.value
        return out


def describe(record: SagaRecord, history: list[Transition], *, hosts: int) -> dict[str, Any]:
    """One saga as ``show`` presents it: entry, the actor that runs it (``saga:<id>`` or
    its host), steps with timings, full history."""
    return {
        **RegistryEntry.json_of(record),
        "runner": runner_name(record, hosts),
        "parent_id": record.parent_id,
        "children": list(dict.fromkeys(t.detail["child_id"] for t in history
                                       if t.event is Event.CHILD_STARTED)),
        "version": record.version,
        "shape": record.shape,
        "pivot": record.pivot,
        "completed_steps": record.completed,
        "compensated_steps": record.compensated,
        "awaiting": record.awaiting,
        "expects": [x.model_dump(mode="json") for x in record.expects],
        "branches": branch_states(record),
        "awaiting_s": (round(time.time() - record.updated_at, 1)
                       if record.awaiting and not record.status.terminal else None),
        "signals_awaited": awaited_signals(record, history),
        "events": [e.model_dump(mode="json", exclude={"payload"}) for e in record.events],
        "steps": steps_from_history(history),
        "history": [t.model_dump(mode="json") for t in history],
    }


def awaited_signals(record: SagaRecord, history: list[Transition]) -> list[dict[str, Any]]:
    """The signals a running saga waits for now: each wait step whose latest transition
    is its start, with the signal's name and until when it waits."""
    if record.status.terminal:
        return []
    latest: dict[str, Transition] = {}
    for t in history:
        if t.step:
            latest[t.step] = t
    return [{"step": step, "signal": t.detail.get("signal"), "until": t.detail.get("until")}
            for step, t in latest.items() if t.event is Event.WAIT_STARTED]


def steps_from_history(history: list[Transition]) -> list[dict[str, Any]]:
    """Per step and phase: attempts, first sent, ended, outcome (``in flight``,
    ``succeeded``, ``compensated``, ``failed``) and last error. The same rows for both
    styles: a choreographed reaction ends with the event it published (``succeeded`` or
    ``compensated``; a failure event after its last failed attempt leaves it ``failed``)."""
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    latest: dict[str, str] = {}  # step -> the phase of its latest call
    for t in history:
        if not t.step:
            continue
        if t.event is Event.EVENT_PUBLISHED:
            _close_reaction(steps, t, t.detail.get("phase") or latest.get(t.step))
            continue
        phase = t.event.phase
        if phase is None:
            continue
        latest[t.step] = phase
        row = steps.setdefault((t.step, phase), {
            "step": t.step, "phase": phase, "attempts": 0, "started_at": None,
            "ended_at": None, "outcome": "in flight", "last_error": None,
        })
        if t.event.is_sent:
            row["attempts"] = max(row["attempts"], t.attempt)
            row["started_at"] = row["started_at"] or t.at
        elif t.event.is_attempt_failure:
            row["last_error"] = t.detail.get("error")
            if t.detail.get("final"):
                row["outcome"], row["ended_at"] = "failed", t.at
        elif t.event.is_step_success:
            row["outcome"], row["ended_at"] = _DONE[phase], t.at
            if "replica" in t.detail:  # the participant's replica that applied it
                row["replica"] = t.detail["replica"]
    for row in steps.values():
        if row["started_at"] and row["ended_at"]:
            row["duration_s"] = round(row["ended_at"] - row["started_at"], 6)
    return list(steps.values())


_DONE = {"action": "succeeded", "compensation": "compensated"}  # a step phase that ended well


def _close_reaction(steps: dict[tuple[str, str], dict[str, Any]], t: Transition,
                    phase: str | None) -> None:
    """A reaction's event is out: the reaction ended well, unless it failed for good (a
    journal from before events carried their outcome: unless its row already says so)."""
    row = steps.get((t.step or "", phase or ""))
    if row is None:
        return
    outcome = t.detail.get("outcome")
    if outcome == "succeeded" or (outcome is None and row["outcome"] == "in flight"):
        row["outcome"], row["ended_at"] = _DONE[row["phase"]], t.at
        if "replica" in t.detail:
            row["replica"] = t.detail["replica"]


def branch_states(record: SagaRecord) -> dict[str, str]:
    """Where each forward step (reaction) stands: ``done``, ``in flight``, ``compensated``
    (a choreography's branches; an orchestrated parallel group's too)."""
    out = {step: "done" for step in record.completed}
    for step, slot in record.branches.items():
        out.setdefault(step, "in flight" if slot.in_flight else "retrying")
    for step in record.compensated:
        out[step] = "compensated"
    for step in record.to_compensate:
        out[step] = "to compensate"
    return out
