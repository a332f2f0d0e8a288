"""Events from the outside world into a running choreographed saga (a bank's webhook):
checked, then journaled before the sender hears back. No Ray.

A choreography takes from outside the events whose model says ``external = True``. One is
sent to a saga by its id, or found by the correlation field its model names
(``correlate_by = "order_id"``: the running saga whose input has that ``order_id``). It is
kept in the journal (as signals are) under the event id its sender gave it: the same id
sent twice is kept once. The bus takes it into the saga's log when it next looks (the
sender nudges it), whether or not the saga is ready for it yet; a reaction runs once, so
one that came after its reaction ran is kept and never applied. Whatever is refused is
refused before anything is journaled, with an error that says why.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from saga_actors.errors import (
    EventPayloadError,
    SagaFinishedError,
    UncorrelatedEventError,
    UnknownEventError,
)
from saga_actors.journal.base import Journal
from saga_actors.model.choreography import Choreography
from saga_actors.model.messages import NotJSONError, encode_json
from saga_actors.model.records import SagaRecord, Signal
from saga_actors.model.validation import validation_brief


def check_outside_event(c: Choreography, event_type: str) -> str | None:
    """The field an event from outside is correlated by (None: by saga id only); raises
    :class:`UnknownEventError` for an event ``c`` does not take from outside."""
    if event_type not in c.event_types():
        raise UnknownEventError(event_type, c.name, "not declared (events: "
                                f"{', '.join(c.event_types())})")
    outside = c.external()
    if event_type == c.start:
        raise UnknownEventError(event_type, c.name, "it is the start event: it starts a new "
                                "saga (rt.publish(..., saga_id=...) or rt.start), it does not "
                                "enter a running one")
    if event_type not in outside:
        takes = ", ".join(sorted(outside)) or "none"
        raise UnknownEventError(event_type, c.name, "it does not enter a running saga from "
                                f"outside; its reactions publish it (events from outside: "
                                f"{takes})")
    return outside[event_type]


def find_saga(journal: Journal, c: Choreography, event_type: str,
              payload: dict[str, Any]) -> SagaRecord:
    """The saga an event from outside is for, found by its correlation field: the running
    one whose input has the same value (else the newest finished one, which refuses it)."""
    field = check_outside_event(c, event_type)
    if field is None:
        raise UncorrelatedEventError(event_type, c.name, "it declares no correlate_by: "
                                     "give the saga id")
    if not isinstance(payload, dict) or field not in payload:
        raise EventPayloadError(event_type, "(none found)", f"{field!r} is missing: the "
                                "event finds its saga by it")
    value = payload[field]
    found = journal.correlated(c.name, field, value)
    running = [r for r in found if not r.status.terminal]
    if len(running) > 1:
        ids = ", ".join(r.saga_id for r in running)
        raise UncorrelatedEventError(event_type, c.name, f"{len(running)} running sagas have "
                                     f"{field}={value!r} ({ids}): give the saga id")
    if running:
        return running[0]
    if found:
        return found[0]
    raise UncorrelatedEventError(event_type, c.name, f"no saga has {field}={value!r}")


def accept_outside_event(journal: Journal, c: Choreography, record: SagaRecord,
                         event_type: str, payload: Any, *, event_id: str, now: float,
                         max_bytes: int) -> bool:
    """Check an event from outside for ``record`` and journal it; False when the same
    event id was sent before (kept once). Raises (nothing journaled)
    :class:`UnknownEventError`, :class:`SagaFinishedError` or :class:`EventPayloadError`."""
    field = check_outside_event(c, event_type)
    if not isinstance(event_id, str) or not event_id.strip():
        raise UnknownEventError(event_type, c.name, f"bad event id {event_id!r}")
    taken = {e.external_id for e in record.events}
    if event_id in taken or any(s.signal_id == event_id
                                for s in journal.signals(record.saga_id)):
        return False  # a duplicate: kept once
    if record.status.terminal:
        raise SagaFinishedError(record.saga_id, record.status.value, "events")
    try:
        data = payload.model_dump(mode="json") if hasattr(payload, "model_dump") else payload
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        c.event_model(event_type).model_validate(data)
        encode_json(data, limit=max_bytes, setting="max_input_bytes")
    except ValidationError as exc:
        raise EventPayloadError(event_type, record.saga_id, validation_brief(exc)) from None
    except (NotJSONError, TypeError, ValueError) as exc:
        raise EventPayloadError(event_type, record.saga_id, str(exc)) from None
    if field is not None and str(data.get(field)) != str(record.input.get(field)):
        raise EventPayloadError(event_type, record.saga_id, f"its {field}="
                                f"{data.get(field)!r} is not the saga's "
                                f"({record.input.get(field)!r})")
    return journal.put_signal(Signal(saga_id=record.saga_id, signal_id=event_id,
                                     name=event_type, payload=data, at=now))
