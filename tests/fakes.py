"""Fakes for unit tests of the state machine: a clock and a scripted gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from saga_actors.errors import ParticipantUnavailableError, StepTimeoutError
from saga_actors.messages import StepReply, StepRequest


class FakeClock:
    """Virtual time: ``sleep`` advances it at once and records the wait."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


Behaviour = Callable[[StepRequest], Any]


def ok(output: dict | None = None) -> Behaviour:
    return lambda req: StepReply(ok=True, output=output or {})


def fail(error_type: str = "StepError", *, retryable: bool = True) -> Behaviour:
    return lambda req: StepReply(ok=False, error_type=error_type, error="boom", retryable=retryable)


def timeout() -> Behaviour:
    def raise_timeout(req: StepRequest) -> Any:
        raise StepTimeoutError(req.saga_id, req.step, req.attempt, 1.0)

    return raise_timeout


def died() -> Behaviour:
    def raise_died(req: StepRequest) -> Any:
        raise ParticipantUnavailableError("p", "ActorDiedError")

    return raise_died


class FakeGateway:
    """Answers each (step, kind) from a script: one behaviour per attempt, the last repeats.

    Steps without a script succeed with ``{"<step>_done": True}``. Every call is recorded.
    """

    def __init__(self, script: dict[tuple[str, str], list[Behaviour]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[StepRequest] = []
        self.on_call: Callable[[StepRequest], None] | None = None

    async def call(self, participant: str, request: StepRequest, timeout_s: float) -> StepReply:
        self.calls.append(request)
        if self.on_call:
            self.on_call(request)
        await asyncio.sleep(0)
        plan = self.script.get((request.step, request.kind))
        if not plan:
            return StepReply(ok=True, output={f"{request.step}_done": True})
        n = sum(1 for c in self.calls if (c.step, c.kind) == (request.step, request.kind))
        return plan[min(n, len(plan)) - 1](request)

    def called(self, kind: str | None = None) -> list[tuple[str, str, int]]:
        return [(c.step, c.kind, c.attempt) for c in self.calls if kind in (None, c.kind)]
