"""A participant's idempotency records: the ``saga_effects`` table beside its business
tables, and the replies made of what it holds. Plain functions over a connection. No Ray."""

from __future__ import annotations

import json
import time
from typing import Any

from saga_actors.errors import ActionRefusedError, NonRetryableError, StepError
from saga_actors.model.messages import (
    NotJSONError,
    StepReply,
    StepRequest,
    call_id,
    encode_json,
    idempotency_key,
)

KEYS_PER_QUERY = 500  # keys looked up in one query by a group commit

EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS saga_effects (
    key TEXT PRIMARY KEY,
    saga_id TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL,          -- applied | tombstone | noop
    output TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
)
"""


def recorded_reply(db: Any, key: str) -> StepReply | None:
    row = db.execute(
        "SELECT kind, status, output FROM saga_effects WHERE key=?", (key,)
    ).fetchone()
    return reply_of(key, row)

def keys_of(reqs: list[StepRequest]) -> list[str]:
    """The idempotency keys the requests touch: their own and, for compensations, their
    actions' (a tombstone), sorted."""
    return sorted({k for r in reqs for k in (
        (r.key, idempotency_key(r.saga_id, r.step, "action")) if r.kind == "compensation"
        else (r.key,))})


def rows_for(db: Any, reqs: list[StepRequest]) -> dict[str, tuple[str, str, str]]:
    """key -> (kind, status, output JSON) recorded for the requests' keys and, for
    compensations, their actions' keys."""
    keys = keys_of(reqs)
    rows: dict[str, tuple[str, str, str]] = {}
    for i in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[i:i + KEYS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        for key, kind, status, output in db.execute(
                f"SELECT key, kind, status, output FROM saga_effects WHERE key IN ({marks})",
                chunk):
            rows[key] = (kind, status, output)
    return rows

def applied_action_output(db: Any, req: StepRequest) -> dict[str, Any] | None:
    """The recorded output of the action ``req`` compensates; None if it never applied."""
    row = action_row(db, req.saga_id, req.step)
    return json.loads(row[1]) if row is not None and row[0] == "applied" else None

def action_row(db: Any, saga_id: str, step: str) -> tuple[str, str] | None:
    """(status, output JSON) recorded for the action of ``step``, if any."""
    key = idempotency_key(saga_id, step, "action")
    return db.execute("SELECT status, output FROM saga_effects WHERE key=?",
                      (key,)).fetchone()

def insert(db: Any, key: str, req: StepRequest, kind: str, status: str,
            output: dict) -> str:
    """Record an effect; returns its output as JSON."""
    try:
        encoded = encode_json(output)
    except NotJSONError as exc:  # raised before the effect is kept
        raise NonRetryableError(f"{req.method} returned output that is {exc}; its effect "
                                "was not applied") from None
    write(db, key, req.saga_id, req.step, kind, req.method, status, encoded)
    return encoded

def write(db: Any, key: str, saga_id: str, step: str, kind: str, method: str,
           status: str, encoded: str) -> None:
    db.execute("INSERT INTO saga_effects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, saga_id, step, kind, method, status, encoded, time.time()))


def checked(req: StepRequest, output: Any) -> dict[str, Any]:
    if output is None:
        return {}
    if not isinstance(output, dict):
        raise TypeError(f"{req.method} returned {type(output).__name__}, not a dict")
    return output


def reply_of(key: str, row: tuple[str, str, str] | None) -> StepReply | None:
    """The recorded outcome of ``key`` as a reply (a tombstone refuses); None if none."""
    if row is None:
        return None
    _, status, output = row
    if status == "tombstone":
        err = ActionRefusedError(f"{key}: compensated before it applied; refused")
        return StepReply(ok=False, error_type=type(err).__name__, error=str(err),
                         retryable=False)
    return StepReply.model_construct(ok=True, output=json.loads(output), error_type=None,
                                      error=None, retryable=True, replayed=True)


def applied_reply(output: dict[str, Any]) -> StepReply:
    return StepReply.model_construct(ok=True, output=output, error_type=None, error=None,
                                     retryable=True, replayed=False)


def request_call_id(request: StepRequest | dict) -> str:
    if isinstance(request, StepRequest):
        return request.call_id
    try:
        return call_id(request["saga_id"], request["step"], request["kind"], request["attempt"])
    except (KeyError, TypeError):
        return f"malformed-{id(request)}"


def call_cancelled(call_id: str) -> StepReply:
    return StepReply(ok=False, error_type="CallCancelled", error=f"{call_id} was cancelled",
                     retryable=True)


def failed_reply(exc: Exception) -> StepReply:
    """An exception as a reply: its type name and message cross Ray, never the object."""
    retryable = exc.retryable if isinstance(exc, StepError) else True
    return StepReply(ok=False, error_type=type(exc).__name__, error=str(exc), retryable=retryable)
