"""Wait steps: a saga waits, durably, for a named outside signal. No Ray.

A signal is journaled when it is sent (:meth:`Journal.put_signal`), before anything else
happens, whether or not the saga waits for it yet; sending the same signal id again keeps
one. A wait step journals when it starts waiting and until when, takes the oldest signal of
its name that no wait took before (the id is journaled with the step's success, so it is
taken once), and fails for good past its timeout. While it waits, a saga costs nothing but
its asyncio task: no Ray call, no thread, no polling (the sender nudges the saga's runner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loguru import logger
from pydantic import ValidationError

from saga_actors.engine.failures import SIGNAL_ID, Failure, checked_output
from saga_actors.errors import (
    SagaFinishedError,
    SignalPayloadError,
    UnknownSignalError,
)
from saga_actors.journal.base import Journal
from saga_actors.model.definition import Saga, Step
from saga_actors.model.events import Event
from saga_actors.model.messages import NotJSONError, encode_json
from saga_actors.model.records import Branch, SagaRecord, Signal
from saga_actors.model.state import SagaStatus
from saga_actors.model.validation import validation_brief

if TYPE_CHECKING:
    from saga_actors.engine.orchestration import SagaInstance


def accept_signal(journal: Journal, definition: Saga, record: SagaRecord, name: str,
                  payload: Any, *, signal_id: str, now: float, max_bytes: int) -> bool:
    """Check a signal for ``record`` and journal it; False when it was sent before (same
    id: kept once). Raises :class:`SagaFinishedError`, :class:`UnknownSignalError` or
    :class:`SignalPayloadError` (nothing journaled) for a signal nothing can take."""
    if not isinstance(signal_id, str) or not signal_id.strip():
        raise UnknownSignalError(record.saga_id, name, f"bad signal id {signal_id!r}")
    if signal_id in record.signals_taken or any(
            s.signal_id == signal_id for s in journal.signals(record.saga_id)):
        return False  # a duplicate: taken (or kept) once
    if record.status.terminal:
        raise SagaFinishedError(record.saga_id, record.status.value)
    waits = definition.signals()
    step = waits.get(name)
    if step is None:
        known = ", ".join(sorted(waits)) or "none"
        raise UnknownSignalError(record.saga_id, name, f"no wait step of {definition.name!r} "
                                 f"takes it (signals it takes: {known})")
    if step.name in record.completed or step.name in record.compensated:
        raise UnknownSignalError(record.saga_id, name, f"its wait step {step.name!r} is over")
    model = step.output_model
    try:
        parsed = payload if isinstance(payload, model) else model.model_validate(payload)
        data = parsed.model_dump(mode="json")
        encode_json(data, limit=max_bytes, setting="max_input_bytes")
    except ValidationError as exc:
        raise SignalPayloadError(record.saga_id, name, validation_brief(exc)) from None
    except (NotJSONError, TypeError, ValueError) as exc:
        raise SignalPayloadError(record.saga_id, name, str(exc)) from None
    return journal.put_signal(Signal(saga_id=record.saga_id, signal_id=signal_id, name=name,
                                     payload=data, at=now))


def pending_signal(signals: list[Signal], name: str, taken: list[str]) -> Signal | None:
    """The oldest signal called ``name`` that no wait has taken yet."""
    return next((s for s in signals if s.name == name and s.signal_id not in taken), None)


async def wait_for_signal(run: SagaInstance, step: Step) -> tuple[dict[str, Any], Failure | None]:
    """Run wait step ``step`` of ``run``: its signal's payload, or why it failed."""
    slot = run.slot(step, "action")
    until = slot.until
    if not slot.in_flight or until is None:
        until = run._clock.now() + step.timeout_s
        await run._commit(Event.WAIT_STARTED, step=step.name, status=SagaStatus.PENDING,
                          step_attempt=1, detail={"signal": step.signal, "until": round(until, 3)},
                          **run.slot_changes(step, "action",
                                             Branch(attempt=1, in_flight=True, until=until)))
        logger.info("waiting for signal {!r} (up to {:g}s)", step.signal, step.timeout_s)
    while True:
        run._wake.clear()  # a nudge from here on wakes the pause below
        signal = pending_signal(run._journal.signals(run.saga_id), step.signal or "",
                                run.record.signals_taken)
        if signal is not None:
            try:
                output = checked_output(step, signal.payload)
            except ValueError as exc:  # checked when sent: only a changed model gets here
                return {}, Failure("InvalidSignal", f"signal {signal.signal_id}: {exc}",
                                   retryable=False, uncertain=False)
            logger.info("took signal {!r} ({})", step.signal, signal.signal_id)
            return {**output, SIGNAL_ID: signal.signal_id}, None
        halted = run._halted(uncertain=False)
        if halted is not None:
            return {}, halted
        left = until - run._clock.now()
        if left <= 0:
            failure = Failure("SignalTimeout", f"no {step.signal!r} signal came within "
                              f"{step.timeout_s:g}s", retryable=False, uncertain=False)
            await run._attempt_failed(step, "action", 1, failure, final=True)
            return {}, failure
        await run._pause(left)
