"""Whether a saga can start: every check that must pass before anything is journaled, in
ONE place and free of Ray. :class:`~saga_actors.runtime.SagaRuntime` and
:class:`~saga_actors.testing.SagaTestKit` both ask it, so a saga the kit accepts is one the
runtime accepts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from saga_actors.engine.admission import build_record, opened
from saga_actors.errors import (
    InvalidSagaIdError,
    SagaDefinitionError,
    UnknownParticipantError,
    UnknownPlacementError,
)
from saga_actors.model.choreography import Choreography
from saga_actors.model.definition import Saga, StepKind
from saga_actors.model.records import SagaRecord

SAGA_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

Lookup = Callable[[str], "Saga | Choreography | None"]  # a saga type -> its newest version


def saga_id_for(saga: Saga | Choreography, saga_id: str | None) -> str:
    """``saga_id`` checked (:class:`InvalidSagaIdError`), or a new one."""
    if saga_id is None:
        return f"{saga.name}-{uuid.uuid4().hex[:12]}"
    if not isinstance(saga_id, str) or not SAGA_ID.match(saga_id):
        raise InvalidSagaIdError(saga_id)
    return saga_id


def placement_for(saga: Saga | Choreography, placement: str | None) -> str:
    """``placement`` (or the saga's own) checked: :class:`UnknownPlacementError`."""
    placement = placement or saga.placement
    known = ("choreography",) if isinstance(saga, Choreography) else ("dedicated", "hosted")
    if placement not in known:
        raise UnknownPlacementError(placement, known)
    return placement


def child_sagas(saga: Saga, lookup: Lookup, path: tuple[str, ...] = ()) -> dict[str, Saga]:
    """The saga types ``saga``'s child steps run (theirs too), as ``lookup`` finds them;
    each checked: known, orchestrated, no cycle, and undoable where it must be
    (:class:`SagaDefinitionError` naming the step)."""
    out: dict[str, Saga] = {}
    path = (*path, saga.name)
    for name, step in saga.children().items():
        if name in path:
            raise SagaDefinitionError(saga.name, f"step {step.name!r} runs {name!r} as a "
                                      f"child, which runs it in turn ({' -> '.join(path)})")
        child = lookup(name)
        if child is None:
            raise SagaDefinitionError(saga.name, f"step {step.name!r} runs child saga "
                                      f"{name!r}, which is not registered (register it too)")
        if not isinstance(child, Saga):
            raise SagaDefinitionError(saga.name, f"step {step.name!r}: {name!r} is a "
                                      "choreography; a child step runs an orchestrated saga")
        if step.undoable and any(s.kind is StepKind.PIVOT for s in child.steps):
            raise SagaDefinitionError(saga.name, f"compensatable step {step.name!r} runs "
                                      f"{name!r}, which has a pivot and cannot always be "
                                      "undone: make the step retriable, after the pivot")
        out[name] = child
        out.update(child_sagas(child, lookup, path))
    return out


def check_handlers(saga: Saga | Choreography, participant: str,
                   described: dict[str, Any]) -> None:
    """That ``participant`` (as its ``describe()`` says: ``actions``, ``compensations``)
    has every method ``saga`` calls on it, each in the role it is called in:
    :class:`UnknownParticipantError` naming the method."""
    actions, compensations = set(described["actions"]), set(described["compensations"])
    for method in sorted(saga.participants.get(participant, ())):
        if method not in actions | compensations:
            raise UnknownParticipantError(
                participant, method, reason=f"declared: {sorted(actions | compensations)}")
    for method, role in sorted(saga.roles().get(participant, set())):
        if method not in (actions if role == "action" else compensations):
            other = "a compensation" if role == "action" else "an action"
            raise UnknownParticipantError(
                participant, method, reason=f"it is {other}, but {saga.name!r} calls it as "
                f"{'an action' if role == 'action' else 'a compensation'}")


def start_record(saga: Saga | Choreography, payload: Any, saga_id: str | None,
                 placement: str | None, *, lookup: Lookup, now: float,
                 definition_ref: str | None = None,
                 max_bytes: int | None = None) -> tuple[SagaRecord, dict[str, Saga]]:
    """The record a new saga is journaled with (its first action sent, when it opens with
    one: :func:`~saga_actors.engine.admission.opened`), and the child saga types it runs
    (their versions pinned in the record), once every check passed; raises the first that
    fails (the input's :class:`SagaInputError` included)."""
    saga_id = saga_id_for(saga, saga_id)
    placement = placement_for(saga, placement)
    options = {} if max_bytes is None else {"max_bytes": max_bytes}
    record = build_record(saga, saga_id, payload, now=now, placement=placement,
                          definition_ref=definition_ref, **options)
    children = child_sagas(saga, lookup) if isinstance(saga, Saga) else {}
    if children:  # the versions its child steps run are pinned with it
        record = record.model_copy(update={"child_versions": {
            name: child.version for name, child in children.items()}})
    return opened(saga, record), children
