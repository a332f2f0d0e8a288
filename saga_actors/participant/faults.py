"""Faults injected into a participant, for demos and tests. No Ray.

``rt.deploy(Payment, faults={"charge": Fault(delay_s=2)})`` makes the participant wait 2 s
before applying ``charge`` (the wait is cancellable, like a slow outside call);
``Fault(fail=True)`` makes it fail instead (``retryable=True``: a failure worth retrying),
``times=N`` only the first N calls. A replay of a recorded effect is never delayed nor
failed. ``participant.set_faults({...})`` replaces them on a running participant.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Fault(BaseModel):
    """An injected fault for demos and tests: delay a method and/or make it fail."""

    model_config = ConfigDict(extra="forbid")

    delay_s: float = Field(0.0, ge=0, description="Pause before the effect (cancellable).")
    fail: bool = Field(False, description="Raise instead of applying the effect.")
    retryable: bool = Field(False, description="Whether the injected failure is retryable.")
    times: int | None = Field(None, ge=1, description="Fault the first N calls only.")
