"""What a saga sends to a participant and what comes back. Plain data, no Ray."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Inputs and step outputs are journaled with every transition: a saga input may be 1 MiB
# of JSON by default (RuntimeConfig.max_input_bytes), a step output at most this, always.
MAX_PAYLOAD_BYTES = 1_048_576


def json_size(n: int) -> str:
    """``n`` bytes, said for a person."""
    return f"{n} bytes" if n < 10_000 else f"{n / 1_048_576:.1f} MiB"


class NotJSONError(ValueError):
    """A value that cannot be kept as JSON, or that is over its size limit."""


def encode_json(value: Any, *, limit: int = MAX_PAYLOAD_BYTES, setting: str = "") -> str:
    """``value`` as JSON text, checked: the ONE check for saga inputs, step outputs and
    effect outputs. NaN and Infinity are refused (JSON has neither: stored, they would
    come back as null and no longer equal what was given). Raises :class:`NotJSONError`."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError as exc:
        if "out of range float" in str(exc).lower():  # json's only wording for NaN and Infinity
            raise NotJSONError("not JSON: NaN and Infinity have no JSON form") from None
        raise NotJSONError(f"not JSON-serializable: {exc}") from None
    except TypeError as exc:
        raise NotJSONError(f"not JSON-serializable: {exc}") from None
    size = len(text.encode())
    if size > limit:
        raise NotJSONError(f"{json_size(size)} as JSON, over the limit of {json_size(limit)}"
                           + (f" ({setting})" if setting else ""))
    return text

Kind = Literal["action", "compensation"]


def idempotency_key(saga_id: str, step: str, kind: Kind) -> str:
    """The deterministic key of one effect: the same on every retry and after any crash."""
    return f"{saga_id}/{step}/{kind}"


def call_id(saga_id: str, step: str, kind: Kind, attempt: int) -> str:
    """One attempt of one effect: what the gateway names to stop that one call."""
    return f"{idempotency_key(saga_id, step, kind)}#{attempt}"


class StepRequest(BaseModel):
    """One call of an action or a compensation on a participant."""

    model_config = ConfigDict(extra="forbid")

    saga_id: str
    saga_type: str
    version: int = Field(1, ge=1, description="Of the saga's definition (for ctx.input).")
    step: str
    kind: Kind
    method: str
    attempt: int = Field(ge=1)
    data: dict[str, Any] = Field(default_factory=dict, description="Input plus earlier outputs.")
    action_output: dict[str, Any] | None = Field(
        None, description="For a compensation: the output of the action it undoes."
    )
    event: str | None = Field(None, description="A choreography's delivery: the event type.")

    @property
    def key(self) -> str:
        """The idempotency key of this effect."""
        return idempotency_key(self.saga_id, self.step, self.kind)

    @property
    def call_id(self) -> str:
        """This attempt's id (the key is the same on every attempt)."""
        return call_id(self.saga_id, self.step, self.kind, self.attempt)

    @property
    def task_name(self) -> str:
        """The Ray task name, so the dashboard's task view reads as a saga timeline."""
        if self.event:  # a choreography's delivery: <saga_id>/<event>/<handler>
            return f"{self.saga_id}/{self.event}/{self.method}"
        suffix = "/compensate" if self.kind == "compensation" else ""
        return f"{self.saga_id}/{self.step}{suffix}"


class StepReply(BaseModel):
    """The outcome of a call, as the participant recorded it.

    Participants never let business exceptions cross Ray: an exception becomes
    ``ok=False`` with its type name and message, so an unpicklable exception cannot break
    the caller.
    """

    model_config = ConfigDict(extra="forbid")

    ok: bool
    output: dict[str, Any] = Field(default_factory=dict)
    error_type: str | None = None
    error: str | None = None
    retryable: bool = True
    replica: int | None = Field(None, description="The replica of the participant that "
                                "answered (its actor shell says; none in-process).")
    replayed: bool = Field(False, description="A recorded outcome returned for a repeated key.")
