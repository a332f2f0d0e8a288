"""The shape of a saga definition: what a journaled saga depends on to be recovered.

A started saga is pinned to its definition's name, version and the hash of its shape,
journaled with it. The shape is the steps in order (name, participant, action,
compensation, kind, output model; the parallel group, child saga type or signal of a step
that has one) and the input model: change any of them and the sagas
in the journal would be resumed at the wrong place, or call the wrong method. Tunables
(timeouts, retry policies, the deadline, the default placement) are not part of it: they
may change within a version. Choreographies have a shape too (their reactions).

No Ray here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel


def shape_of(definition: Any) -> dict[str, Any]:
    """The shape of a :class:`Saga` or :class:`Choreography` as plain JSON data."""
    out: dict[str, Any] = {"name": definition.name, "version": definition.version,
                           "input": _model(definition.input_model)}
    if not hasattr(definition, "reactions"):  # an orchestrated saga
        out["steps"] = [_step_shape(s) for s in definition.steps]
    if hasattr(definition, "reactions"):
        out["reactions"] = [{k: getattr(r, k) for k in _REACTION_SHAPE}
                            | ({"on_all": list(r.on_all)} if r.on_all else {})
                            for r in definition.reactions]
        if definition.external():  # only when there are: older flows hash as they did
            out["external"] = definition.external()
        out["events"] = {m.__name__: _model(m) for m in definition.events}
        out["ends"] = [definition.start, list(definition.completes_on),
                       list(definition.fails_on)]
    return out


def _step_shape(step: Any) -> dict[str, Any]:
    shape = {"name": step.name, "participant": step.participant, "action": step.action,
             "compensation": step.compensation, "kind": step.kind.value,
             "output": _model(step.output_model)}
    for extra in _STEP_EXTRAS:  # only when set: plain steps hash as they always did
        if getattr(step, extra):
            shape[extra] = getattr(step, extra)
    return shape


_STEP_EXTRAS = ("group", "child", "signal")  # a parallel group, a child saga, a wait

# what a journaled choreography depends on (its timeouts and retries are tunables)
_REACTION_SHAPE = ("on", "participant", "handler", "name", "publishes", "failure",
                   "compensates", "timeout_event")


_HASHES: dict[int, tuple[Any, str]] = {}  # id -> (definition, hash): definitions are frozen
_MAX_HASHES = 1024  # definitions a process knows are few; a program making many stays bounded


def shape_hash(definition: Any) -> str:
    """16 hex digits of the SHA-256 of the shape's canonical JSON. Remembered per
    definition object (building the JSON schemas costs ~0.7 ms, and every start asks)."""
    cached = _HASHES.get(id(definition))
    if cached is not None and cached[0] is definition:
        return cached[1]
    text = json.dumps(shape_of(definition), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    if len(_HASHES) >= _MAX_HASHES:
        _HASHES.clear()
    _HASHES[id(definition)] = (definition, digest)
    return digest


def shape_changes(old: Any, new: Any) -> list[str]:
    """What differs between two shapes, said for a person (empty: the same shape)."""
    a, b = shape_of(old), shape_of(new)
    changes: list[str] = []
    if a["input"] != b["input"]:
        changes.append(f"input model: {_fields_diff(a['input'], b['input'])}")
    old_steps = {s["name"]: s for s in a.get("steps", [])}
    new_steps = {s["name"]: s for s in b.get("steps", [])}
    changes += _named_changes("step", old_steps, new_steps,
                              ("participant", "action", "compensation", "kind", *_STEP_EXTRAS))
    for name in new_steps:
        if name in old_steps and old_steps[name]["output"] != new_steps[name]["output"]:
            changes.append(f"step {name!r} output model: "
                           f"{_fields_diff(old_steps[name]['output'], new_steps[name]['output'])}")
    if "reactions" in a or "reactions" in b:
        changes += _choreography_changes(a, b)
    return changes


def _choreography_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two choreographies' shapes: reactions (by name) and what each
    calls, publishes and undoes; events added, removed or remodelled; the ends."""
    changes = _named_changes("reaction", {r["name"]: r for r in a.get("reactions", [])},
                             {r["name"]: r for r in b.get("reactions", [])}, _REACTION_SHAPE)
    old_events, new_events = a.get("events", {}), b.get("events", {})
    if added := [e for e in new_events if e not in old_events]:
        changes.append(f"events added: {added}")
    if removed := [e for e in old_events if e not in new_events]:
        changes.append(f"events removed: {removed}")
    for name in new_events:
        if name in old_events and old_events[name] != new_events[name]:
            changes.append(f"event {name!r} model: "
                           f"{_fields_diff(old_events[name], new_events[name])}")
    for i, what in enumerate(("start event", "completes_on", "fails_on")):
        old, new = (a.get("ends") or [None] * 3)[i], (b.get("ends") or [None] * 3)[i]
        if old != new:
            changes.append(f"{what}: {old!r} -> {new!r}")
    return changes


def _named_changes(noun: str, old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                   fields: tuple[str, ...]) -> list[str]:
    """Items added, removed, reordered, and each field that changed, by name."""
    changes: list[str] = []
    if added := [n for n in new if n not in old]:
        changes.append(f"{noun}s added: {added}")
    if removed := [n for n in old if n not in new]:
        changes.append(f"{noun}s removed: {removed}")
    common_old = [n for n in old if n in new]
    common_new = [n for n in new if n in old]
    if common_old != common_new:
        changes.append(f"{noun} order: {common_old} -> {common_new}")
    for name in common_new:
        for field in fields:
            if old[name].get(field) != new[name].get(field):
                changes.append(f"{noun} {name!r} {field}: {old[name].get(field)!r} -> "
                               f"{new[name].get(field)!r}")
    return changes


def _model(model: type[BaseModel] | None) -> dict[str, Any] | None:
    return model.model_json_schema() if model is not None else None


def _fields_diff(old: dict | None, new: dict | None) -> str:
    before = set((old or {}).get("properties", {}))
    after = set((new or {}).get("properties", {}))
    parts = []
    if after - before:
        parts.append(f"fields added {sorted(after - before)}")
    if before - after:
        parts.append(f"fields removed {sorted(before - after)}")
    return ", ".join(parts) or "field types or constraints changed"
