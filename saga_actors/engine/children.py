"""Child steps: a step that runs another saga type as a child saga. No Ray.

The child is a saga of its own (id ``<parent_id>/<step>``, its own record and history in
the journal, ``parent_id`` set), run by its parent's runner in the parent's process: the
parent journals that the child step started, then creates the child (once: a resumed
parent finds it by its id) and drives it to its end. Recovery never starts a child on its
own; its parent, resumed, carries it on. A ``COMPLETED`` child's output (what its steps
output) is the step's output; ``FAILED`` fails the step for good; ``STUCK`` parks the parent
too, and an operator's retry of the parent re-drives the child. When the parent compensates
the step, the child's completed steps are compensated newest first, and the child ends
``FAILED``, its history saying its parent undid it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from loguru import logger

from saga_actors.engine.admission import admit_async, build_record
from saga_actors.engine.failures import Failure, checked_output
from saga_actors.engine.restarts import reopen_stuck
from saga_actors.engine.transitions import advance_async
from saga_actors.errors import SagaInputError
from saga_actors.model.definition import Saga, Step
from saga_actors.model.events import Event
from saga_actors.model.records import Branch, SagaRecord
from saga_actors.model.state import SagaStatus

if TYPE_CHECKING:
    from saga_actors.engine.orchestration import SagaInstance


def child_id(parent_id: str, step: str) -> str:
    """The id of the child saga that step ``step`` of saga ``parent_id`` runs."""
    return f"{parent_id}/{step}"


def child_output(record: SagaRecord) -> dict[str, Any]:
    """What a completed child hands its parent: its steps' outputs (not its input)."""
    return {k: v for k, v in record.data.items() if k not in record.input}


def nudge_child(parent: SagaInstance, child: SagaInstance) -> None:
    """Pass a nudge on to a running child; a parent that must stop cancels it."""
    halt = parent._halt_reason()
    if halt:
        asyncio.ensure_future(child.request_cancel(f"its parent {parent.saga_id} stops: "
                                                   f"{halt}"))
    child.nudge()


async def run_child(run: SagaInstance, step: Step) -> tuple[dict[str, Any], Failure | None]:
    """The action of child step ``step``: the child's output, or why it failed."""
    cid = child_id(run.saga_id, step.name)
    if not run.slot(step, "action").in_flight:  # journaled before the child exists
        await run._commit(Event.CHILD_STARTED, step=step.name, status=SagaStatus.PENDING,
                          step_attempt=1, detail={"child_id": cid, "saga_type": step.child},
                          **run.slot_changes(step, "action", Branch(attempt=1, in_flight=True)))
    record = run._journal.load(cid)
    if record is None:
        definition = _definition(run, step.child or "", run.record.child_versions.get(
            step.child or ""))
        if definition is None:
            return {}, _missing(cid, step.child or "")
        try:
            fresh = build_record(definition, cid, _input_of(definition, run.record.data),
                                 now=run._clock.now(), placement=run.record.placement)
        except SagaInputError as exc:
            return {}, Failure("SagaInputError", f"child saga {cid}: {exc}", retryable=False,
                               uncertain=False)
        record = await admit_async(run._journal, fresh.model_copy(update={
            "parent_id": run.saga_id, "child_versions": run.record.child_versions}))
        logger.info("started child saga {} ({})", cid, step.child)
    else:
        definition = _definition(run, record.saga_type, record.version)
        if definition is None:
            return {}, _missing(cid, record.saga_type)
    if record.status is SagaStatus.STUCK:  # the parent is re-driven: so is its child
        record = await reopen_stuck(run._journal, record, now=run._clock.now())
    if not record.status.terminal:
        record = await _drive(run, definition, record)
    if record.status is SagaStatus.COMPLETED:
        try:
            return checked_output(step, child_output(record)), None
        except ValueError as exc:
            return {}, Failure.bad_output(f"child saga {cid}: {exc}")
    if record.status is SagaStatus.FAILED:
        return {}, Failure("ChildSagaFailed", f"child saga {cid} FAILED: {record.error}",
                           retryable=False, uncertain=False)
    return {}, _stuck(cid, record)


async def undo_child(run: SagaInstance, step: Step) -> Failure | None:
    """The compensation of child step ``step``: its child's completed steps compensated
    (a child still under way is cancelled first). None once the child ended FAILED."""
    cid = child_id(run.saga_id, step.name)
    slot = run.slot(step, "compensation")
    if not slot.in_flight:
        attempt = slot.attempt + 1
        await run._commit(Event.COMPENSATION_SENT, step=step.name,
                          status=SagaStatus.COMPENSATING, step_attempt=attempt,
                          detail={"child_id": cid},
                          **run.slot_changes(step, "compensation",
                                             Branch(attempt=attempt, in_flight=True)))
    record = run._journal.load(cid)
    if record is None:
        return None  # never created: nothing to undo
    definition = _definition(run, record.saga_type, record.version)
    if definition is None:
        return _missing(cid, record.saga_type)
    reason = f"its parent {run.saga_id} compensates step {step.name!r}"
    now = run._clock.now()
    if definition.past_pivot(record.completed) and record.status is not SagaStatus.FAILED:
        return Failure("ChildPastPivot", f"child saga {cid} is past its pivot: it cannot "
                       "be undone (resolve the parent by hand)", retryable=False,
                       uncertain=False)
    if record.status is SagaStatus.STUCK:
        record = await reopen_stuck(run._journal, record, now=now)
    if record.status is SagaStatus.COMPLETED:
        todo = [s for s in reversed(record.completed) if definition.step(s).undoable]
        record = await advance_async(
            run._journal, record, Event.COMPENSATION_STARTED, now=now,
            status=SagaStatus.COMPENSATING, error=f"undone: {reason}", to_compensate=todo,
            finished_at=None, detail={"reason": reason, "error_type": "ParentCompensating",
                                      "to_compensate": todo})
        logger.info("undoing child saga {}: {} step(s)", cid, len(todo))
    elif record.status in (SagaStatus.STARTED, SagaStatus.PENDING) and not record.cancel_reason:
        record = await advance_async(run._journal, record, Event.CANCEL_REQUESTED, now=now,
                                     cancel_reason=reason, detail={"reason": reason})
    if not record.status.terminal:
        record = await _drive(run, definition, record)
    if record.status is SagaStatus.FAILED:
        return None
    return _stuck(cid, record)


async def _drive(run: SagaInstance, definition: Saga, record: SagaRecord) -> SagaRecord:
    """Run the child in this process, as its parent's runner runs the parent."""
    child = type(run)(definition, record, run._journal, run._gateway,
                      definitions=run.definitions, clock=run._clock, rng=run._rng,
                      on_transition=run._on_transition, fault_point=run._fault_point)
    run.children[record.saga_id] = child
    try:
        return await child.run()
    finally:
        run.children.pop(record.saga_id, None)


def _definition(run: SagaInstance, name: str, version: int | None) -> Saga | None:
    if run.definitions is None:
        return None
    if version is None:
        return run.definitions.newest(name)
    found = run.definitions.lookup(name, version)
    return found if isinstance(found, Saga) else None


def _input_of(definition: Saga, data: dict[str, Any]) -> dict[str, Any]:
    """The parent's data the child's input model declares."""
    return {k: v for k, v in data.items() if k in definition.input_model.model_fields}


def _missing(cid: str, saga_type: str) -> Failure:
    return Failure("UnknownSagaTypeError", f"child saga {cid}: no definition of "
                   f"{saga_type!r} here (register it, then retry the parent)",
                   retryable=False, uncertain=False, park=True)


def _stuck(cid: str, record: SagaRecord) -> Failure:
    return Failure("ChildSagaStuck", f"child saga {cid} is {record.status.value}: "
                   f"{record.error} (retry or resolve the parent)", retryable=False,
                   uncertain=False, park=True)
