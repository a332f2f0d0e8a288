"""Transitions: the next record of a saga and its journaled event, checked. No Ray.

Every change to a saga goes through :func:`prepare`: the event is an :class:`Event`, the
new status is checked against the state table, and each changed field is validated (a
misspelled field or a wrong type raises instead of being journaled).
"""

from __future__ import annotations

from typing import Any

from saga_actors.journal.base import Journal
from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord, Transition
from saga_actors.model.state import check_transition


def prepare(
    record: SagaRecord,
    event: Event,
    *,
    now: float,
    step: str | None = None,
    detail: dict[str, Any] | None = None,
    step_attempt: int | None = None,
    **changes: Any,
) -> tuple[SagaRecord, Transition]:
    """The next record and its transition (checked against the state table); pure."""
    new = record.updated(**changes, seq=record.seq + 1, updated_at=now)  # validated
    if new.status is not record.status:
        check_transition(record.status, new.status, child_undo=bool(
            record.parent_id) and event is Event.COMPENSATION_STARTED)
    transition = Transition.model_construct(  # fields are typed right here: skip validation
        saga_id=record.saga_id,
        seq=new.seq,
        at=now,
        event=event,
        status=new.status,
        step=step or new.current_step,
        attempt=new.attempt if step_attempt is None else step_attempt,  # a parallel step's own
        detail=detail or ({"error": new.error} if "error" in changes else {}),
    )
    return new, transition


async def advance_async(journal: Journal, record: SagaRecord, event: Event,
                        **kwargs: Any) -> SagaRecord:
    """Journal one transition of ``record``, awaited (an actor's event loop must never
    wait on the journal's lock); raises :class:`JournalConflictError` when another writer
    advanced the saga first."""
    new, transition = prepare(record, event, **kwargs)
    await journal.write(new, transition)
    return new
