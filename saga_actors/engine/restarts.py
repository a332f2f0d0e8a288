"""Restart accounting shared by the supervisor (lost saga actors) and the hosts (crashed
instances): each restart is journaled with its backoff; past the budget the saga is parked
STUCK with the reason. And how long a healthy saga may stay quiet. No Ray."""

from __future__ import annotations

from loguru import logger

from saga_actors.engine.transitions import advance_async
from saga_actors.journal.base import Journal
from saga_actors.model.definition import RetryPolicy, Saga
from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord
from saga_actors.model.state import SagaStatus


def restart_backoff() -> RetryPolicy:
    """Between restarts of what runs a saga: quick at first (a crash is usually a blip),
    at most 10 s apart (a saga is never left waiting long)."""
    return RetryPolicy(initial_backoff_s=0.2, max_backoff_s=10)


async def count_restart(
    journal: Journal,
    record: SagaRecord,
    *,
    what: str,
    event: Event,
    why: str,
    budget: int,
    backoff: RetryPolicy,
    now: float,
) -> float | None:
    """Journal one more restart of whatever runs ``record`` and return the backoff before
    it; past ``budget`` restarts, park the saga STUCK with the reason and return None."""
    count = record.restarts + 1
    if count > budget:
        reason = f"{what} {count} times (restart budget {budget}); last: {why}"
        await advance_async(journal, record, Event.SAGA_STUCK, now=now,
                            status=SagaStatus.STUCK, stuck_from=record.status, error=reason,
                            finished_at=now,
                            detail={"reason": reason, "error_type": "RestartBudgetExceeded"})
        logger.error("saga {} STUCK: {}", record.saga_id, reason)
        return None
    delay = backoff.backoff_s(count)
    await advance_async(journal, record, event, now=now, restarts=count,
                        detail={"reason": why, "restart": count, "after_s": round(delay, 3)})
    logger.warning("saga {}: restart {} in {:.2f}s: {}", record.saga_id, count, delay, why)
    return delay


async def reopen_stuck(journal: Journal, record: SagaRecord, *, now: float) -> SagaRecord:
    """Journal an operator's retry of a STUCK saga: it goes back to where it stuck (a
    parent's retry re-drives its STUCK child the same way)."""
    back = record.stuck_from or SagaStatus.COMPENSATING
    return await advance_async(
        journal, record, Event.RETRY_REQUESTED, now=now, status=back, restarts=0,
        finished_at=None, in_flight=False,
        attempt=0 if back is SagaStatus.COMPENSATING else record.attempt,
        detail={"resumes": back.value})


def stall_limit_s(definition: Saga, record: SagaRecord, grace_s: float) -> float:
    """How long a saga may go without a journaled transition before it counts as stalled.

    Every attempt journals at least once, so one attempt's timeout plus the longest backoff
    plus a grace bounds the quiet time of a healthy saga.
    """
    if record.current_step is None:
        return grace_s
    steps = definition.group(record.current_step) or (definition.step(record.current_step),)
    phase = record.phase or "action"
    return max(s.timeout_s + s.policy(phase).max_backoff_s for s in steps) + grace_s
