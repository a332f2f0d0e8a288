"""Admission: a saga's input checked, its first record built, and journaled once. No Ray.

Nothing is journaled unless every check passes; starting an existing saga id with the
same input returns that saga instead of running it twice.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretBytes, SecretStr, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from saga_actors.constants import POOLED
from saga_actors.engine.choreography import start_event
from saga_actors.engine.transitions import prepare
from saga_actors.errors import SagaConflictError, SagaInputError
from saga_actors.journal.base import Journal
from saga_actors.model.choreography import Choreography
from saga_actors.model.definition import Saga, StepKind
from saga_actors.model.events import Event
from saga_actors.model.messages import MAX_PAYLOAD_BYTES, NotJSONError, encode_json
from saga_actors.model.records import SagaRecord, first_transitions
from saga_actors.model.shapes import shape_hash
from saga_actors.model.state import SagaStatus
from saga_actors.model.validation import validation_brief


def build_record(
    definition: Saga | Choreography,
    saga_id: str,
    payload: Any,
    *,
    now: float,
    placement: str | None = None,
    definition_ref: str | None = None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> SagaRecord:
    """Validate ``payload`` against the saga's input model and build its first record.

    Raises :class:`SagaInputError` (nothing is journaled) for an input that does not
    validate, cannot be stored as JSON, or is larger than ``max_bytes`` as JSON.
    """
    model = definition.input_model
    try:
        parsed = payload if isinstance(payload, model) else model.model_validate(payload)
        # secrets are journaled as themselves (recovery and participants need them); the
        # registry, the CLI views and the logs never carry a saga's input
        data = to_jsonable_python(_reveal(parsed.model_dump()))
        encode_json(data, limit=max_bytes, setting="max_input_bytes")
    except ValidationError as exc:
        raise SagaInputError(definition.name, validation_brief(exc)) from None
    except NotJSONError as exc:
        raise SagaInputError(definition.name, str(exc)) from None
    except (TypeError, ValueError, PydanticSerializationError) as exc:
        raise SagaInputError(definition.name, f"not JSON-serializable: {exc}") from None
    # a choreography's event log begins with its input
    events = ([start_event(definition, saga_id, data, now)]
              if isinstance(definition, Choreography) else [])
    return SagaRecord(
        events=events,
        saga_id=saga_id,
        saga_type=definition.name,
        version=definition.version,
        shape=shape_hash(definition),
        placement=placement or definition.placement,
        definition_ref=definition_ref,
        pivot=next((s.name for s in definition.steps if s.kind is StepKind.PIVOT), None)
        if isinstance(definition, Saga) else None,
        input=data,
        data=dict(data),
        created_at=now,
        updated_at=now,
        deadline_at=now + definition.deadline_s if definition.deadline_s else None,
    )


def opened(definition: Saga | Choreography, record: SagaRecord) -> SagaRecord:
    """A new hosted saga's record with its first action already sent, when its first step
    is a participant's action (not a group, a child or a wait): journaled at admission in
    the same write as the start, so the host sends that action at once, as the resend of a
    journaled attempt (same attempt, same key), with no write of its own before it. Any
    other saga's record is returned as it is (a dedicated saga may wait for a free slot:
    until its actor runs, it says so, STARTED)."""
    if (not isinstance(definition, Saga) or record.seq != 0 or record.parent_id
            or record.placement not in POOLED):
        return record
    group = definition.steps_at(0)
    step = group[0] if len(group) == 1 else None
    if step is None or step.group or step.child or step.signal:
        return record
    sent, _ = prepare(record, Event.ACTION_SENT, now=record.created_at, step=step.name,
                      step_attempt=1, status=SagaStatus.PENDING, current_step=step.name,
                      phase="action", attempt=1, in_flight=True, wait_until=None)
    return sent


def admit(journal: Journal, record: SagaRecord) -> SagaRecord:
    """Journal a new saga; an existing saga with the same id and input is returned instead.

    Raises :class:`SagaConflictError` when the id is taken by another type or input.
    """
    if journal.create(record, *first_transitions(record)):
        return record
    return _existing(journal, record)


async def admit_async(journal: Journal, record: SagaRecord) -> SagaRecord:
    """:func:`admit`, with the journal write group-committed."""
    if await journal.create_async(record, *first_transitions(record)):
        return record
    return _existing(journal, record)


def admitted_before(journal: Journal, record: SagaRecord) -> SagaRecord | None:
    """The saga already journaled under ``record``'s id, if any; raises
    :class:`SagaConflictError` when it is of another type or input."""
    return _existing(journal, record) if journal.load(record.saga_id) is not None else None


def _existing(journal: Journal, record: SagaRecord) -> SagaRecord:
    existing = journal.load(record.saga_id)
    assert existing is not None
    if existing.saga_type != record.saga_type:
        raise SagaConflictError(record.saga_id, f"it is a {existing.saga_type!r} saga")
    if existing.input != record.input:
        raise SagaConflictError(record.saga_id, "it was started with a different input")
    return existing


def _reveal(value: Any) -> Any:
    if isinstance(value, (SecretStr, SecretBytes)):
        secret = value.get_secret_value()
        return secret.decode() if isinstance(secret, bytes) else secret
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_reveal(v) for v in value]
    return value
