"""What every saga runner shares: one saga's record, journaled transition by transition
before it is acted on. No Ray.

:class:`~saga_actors.engine.orchestration.SagaInstance` (orchestrated steps) and
:class:`~saga_actors.engine.choreography.ChoreographyInstance` (a choreography's event
log) are both a :class:`JournaledRun`: built from the journal after any crash, they carry
on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from loguru import logger

from saga_actors.clock import Clock, SystemClock
from saga_actors.engine.failures import Failure
from saga_actors.engine.transitions import prepare
from saga_actors.errors import ParticipantUnavailableError, StepTimeoutError
from saga_actors.journal.base import Journal
from saga_actors.model.definition import RetryPolicy
from saga_actors.model.events import Event
from saga_actors.model.messages import StepReply, StepRequest
from saga_actors.model.records import SagaRecord, Transition, as_admitted, first_transitions
from saga_actors.model.state import SagaStatus


class Gateway(Protocol):
    """Sends a request to a participant.

    Returns the participant's :class:`StepReply`; raises :class:`StepTimeoutError` after
    cancelling a call that took longer than ``timeout_s``, or
    :class:`ParticipantUnavailableError` when the participant died (outcome unknown).
    """

    async def call(self, participant: str, request: StepRequest, timeout_s: float) -> StepReply:
        """One call."""

    async def fence(self, participant: str, saga_id: str, step: str,
                    timeout_s: float) -> dict[str, Any]:
        """Settle an action of unknown outcome: ``{"applied": bool, "output": ...}``; the
        participant makes sure an action it reports as not applied never will be."""


TransitionListener = Callable[[SagaRecord, Transition], None]
# called at the instants a crash is most dangerous: (saga_id, "<step>:<kind>:sent") once the
# journal holds Event.sent(kind) and before the call goes out, and "<step>:<kind>:replied"
# once the participant answered and before the journal holds it (see saga_actors.testing)
FaultPoint = Callable[[str, str], None]

Outcome = tuple[dict[str, Any], "Failure | None"]  # (output, None) or ({}, why not)


@dataclass
class Call:
    """One step's or reaction's participant call, as the retry loop both styles share
    (:meth:`JournaledRun._with_retries`) needs it: what differs between them is given."""

    step: str
    kind: str  # action | compensation
    policy: RetryPolicy
    attempt: int  # attempts so far
    resend: bool  # the last was sent and its outcome never journaled (a crash): send again
    send: Callable[[int], Awaitable[Outcome]]  # one attempt: the participant call
    stop: Callable[[int, bool], Failure | None]  # before an attempt: a halt, a deadline
    sent_changes: Callable[[int], dict[str, Any]]  # record fields of a sent attempt
    failed_changes: Callable[[int], dict[str, Any]]  # ... of a failed one
    forever: bool = False  # a retriable step, past the pivot: until it succeeds


_ENDS = {Event.STEP_SUCCEEDED: "action", Event.STEP_COMPENSATED: "compensation"}
_RNG = random.Random()  # backoff jitter; seeding one per instance costs more than a step


class JournaledRun:
    """One saga's record, its journal, the gateway to its participants and a clock."""

    def __init__(
        self,
        definition: Any,
        record: SagaRecord,
        journal: Journal,
        gateway: Gateway,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_transition: TransitionListener | None = None,
        fault_point: FaultPoint | None = None,
        admitted: bool = False,
    ) -> None:
        if record.saga_type != definition.name:
            raise ValueError(f"record is a {record.saga_type!r} saga, not {definition.name!r}")
        self.definition = definition
        self.record = record
        self._journal = journal
        self._gateway = gateway
        self._clock = clock or SystemClock()
        self._rng = rng or _RNG
        self._on_transition = on_transition
        self._fault_point = fault_point
        self._wake = asyncio.Event()
        self._held: list[Transition] = []  # deferred transitions, journaled with the next
        self._calls: set[asyncio.Future] = set()  # action calls under way (a halt stops them)
        self._stop_branches: str | None = None  # set while a failed branch stops the others
        self._served_by: dict[tuple[str, str], int] = {}  # (step, kind) -> replica, till journaled
        # nothing journaled since its admission (``admitted``: the caller just journaled
        # it, with its first send, if any: that send goes out as a resend, and no resume
        # is journaled first)
        self._admitted = record.seq == 0 or (admitted and as_admitted(record))

    @property
    def saga_id(self) -> str:
        return self.record.saga_id

    async def run(self) -> SagaRecord:
        """Drive the saga until it is COMPLETED, FAILED or STUCK; safe to call after a crash."""
        with logger.contextualize(saga_id=self.saga_id, saga_type=self.definition.name):
            rec = self.record
            if as_admitted(rec):  # (so is every record the caller calls just admitted)
                # its start (and its first send) was journaled at admission, not here, and
                # nothing since: listeners (the registry's counters) hear of it now
                self._notify(rec, first_transitions(rec))
            if not self._admitted and not rec.status.terminal:
                # Picked up after a crash or a restart: say so, and restart the stall clock.
                await self._commit(Event.RESUMED, detail={"in_flight": self.record.in_flight},
                                   waiting_for=None)
            while not self.record.status.terminal:
                await self._advance()
        return self.record

    async def _advance(self) -> None:
        """Take the saga one stretch further (subclasses)."""
        raise NotImplementedError

    async def request_cancel(self, reason: str) -> bool:
        """Ask a running saga to abort and compensate. True when it will compensate and end
        FAILED (also when a cancel was asked before, or it compensates already: asking again
        is safe); False once it is over or cannot be cancelled any more."""
        return await self.cancel(reason) is None

    async def cancel(self, reason: str) -> str | None:
        """:meth:`request_cancel`, answering why not: None when the saga will compensate,
        else the reason it cannot (said for an operator)."""
        rec = self.record
        if rec.status.terminal:
            return f"it is already {rec.status.value}"
        if rec.cancel_reason or rec.status is SagaStatus.COMPENSATING:
            return None
        refusal = self._cancel_refusal()
        if refusal:
            return refusal
        await self._commit(Event.CANCEL_REQUESTED, cancel_reason=reason,
                           detail={"reason": reason})
        self.nudge()
        return None

    def _cancel_refusal(self) -> str | None:
        """Why a cancel can no longer make the running saga compensate (subclasses)."""
        return None

    def _abort_reason(self) -> str | None:
        """Why the saga must stop going forward now (a cancel, its deadline), if it must."""
        return None

    def _abort_type(self) -> str:
        """The error type of an abort: the saga's state says which it is."""
        return "SagaCancelled" if self.record.cancel_reason else "DeadlineExceeded"

    def _halt_reason(self) -> str | None:
        """Why the calls under way must stop now: an abort, or a parallel branch (a step of
        a ``Parallel`` group, a reaction of a fan-out) that failed for good."""
        return self._abort_reason() or self._stop_branches

    def stop_branches(self, reason: str | None) -> None:
        """The parallel rule both styles share: the first branch that fails for good stops
        the others (their calls in flight are cancelled; what is then unknown is settled
        or compensated with the rest). None: no longer stopping."""
        self._stop_branches = reason
        if reason is not None:
            self.nudge()

    def _halted(self, *, uncertain: bool) -> Failure | None:
        """The failure of a call stopped by :meth:`_halt_reason` (None: nothing stops it);
        ``uncertain``: it was sent, so its effect may have happened."""
        halt = self._halt_reason()
        if halt is None:
            return None
        abort = self._abort_reason()
        error_type = self._abort_type() if abort else "StoppedByBranch"
        return Failure.aborted(error_type, abort or halt, uncertain=uncertain)

    def nudge(self) -> None:
        """Wake the saga so it re-checks its deadline, cancel requests and signals now; the
        calls in flight that must not go on are stopped."""
        self._wake.set()
        if self._halt_reason():
            for call in list(self._calls):
                if not call.done():
                    call.cancel()

    async def _pause(self, seconds: float) -> None:
        """Back off, but wake early for a cancel or the deadline."""
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        self._wake.clear()

    async def _commit(
        self,
        event: Event,
        *,
        step: str | None = None,
        detail: dict[str, Any] | None = None,
        defer: bool = False,
        step_attempt: int | None = None,
        **changes: Any,
    ) -> None:
        """Journal a transition (durably: group commit), then make it the saga's state.

        With ``defer=True`` the transition is held back and journaled atomically with the
        next one: for what nothing acts on before the next write (a step's success before
        the next send, a published event before its delivery), which that next write
        therefore still precedes.
        """
        ended = _ENDS.get(event) or (detail or {}).get("phase")
        if step and self._served_by and ended:
            replica = self._served_by.pop((step, ended), None)
            if replica is not None:  # which replica of the participant applied it
                detail = {**(detail or {}), "replica": replica}
        new, transition = prepare(
            self.record, event, now=self._clock.now(), step=step, detail=detail,
            step_attempt=step_attempt, **changes
        )
        self._held.append(transition)
        self.record = new
        if not defer:
            await self._flush()

    def _at(self, point: str) -> None:
        """A crash point (``<step>:<kind>:sent|replied``): the test kit may crash here."""
        if self._fault_point is not None:
            self._fault_point(self.record.saga_id, point)

    async def _flush(self) -> None:
        """Journal the record with the transitions held back (``defer``) and the last one:
        at each commit, and before a wait of unknown length, so that what the saga has is
        seen while it waits."""
        if self._held:
            held, self._held = self._held, []
            await self._journal.write(self.record, *held)
            self._notify(self.record, held)

    def _notify(self, record: SagaRecord, transitions: list[Transition]) -> None:
        if self._on_transition is None:
            return
        for t in transitions:
            try:
                self._on_transition(record, t)
            except Exception:  # a listener must never break the saga
                logger.exception("transition listener failed")

    # --- what both styles do the same way -----------------------------------------------

    async def _park(self, reason: str, error_type: str, *, step: str | None) -> None:
        """Park the saga STUCK with ``reason``, for an operator to ``retry`` (it resumes
        where it stood: forward, or its compensations) or ``resolve``."""
        stuck_from = (SagaStatus.COMPENSATING if self.record.status is SagaStatus.COMPENSATING
                      else SagaStatus.PENDING)
        await self._commit(Event.SAGA_STUCK, status=SagaStatus.STUCK, stuck_from=stuck_from,
                           step=step, error=reason, finished_at=self._clock.now(),
                           in_flight=False, detail={"error": reason, "error_type": error_type})
        logger.error("saga STUCK: {}", reason)

    async def _settle(self, participant: str, step: str, timeout_s: float,
                      policy: RetryPolicy, what: str, error: str,
                      error_type: str) -> dict[str, Any] | None:
        """Settle an action whose outcome is unknown (a timeout, a lost participant, a
        cancel or the deadline mid-call) by its participant (:meth:`Gateway.fence`): the
        answer, ``{"applied": bool, "output": ...}``, journaled (an action reported as not
        applied never will be). Asked again, with ``policy``'s backoff, while the
        participant does not answer; past its budget the saga is parked STUCK (None), the
        reason naming ``what`` ("pivot 'pay'", "'charge'")."""
        reason = f"{what}: outcome unknown ({error})"
        for attempt in range(1, policy.max_attempts + 1):
            try:
                answer = await self._gateway.fence(participant, self.saga_id, step, timeout_s)
            except (StepTimeoutError, ParticipantUnavailableError) as exc:
                logger.warning("settling {} (try {}): {}", step, attempt, exc)
                reason, error_type = f"{what}: outcome unknown ({exc})", type(exc).__name__
                if attempt < policy.max_attempts:
                    await self._pause(policy.backoff_s(attempt, self._rng))
                continue
            await self._commit(Event.PIVOT_SETTLED, step=step,
                               detail={"applied": bool(answer.get("applied"))},
                               uncertain=[s for s in self.record.uncertain if s != step])
            return answer
        await self._park(reason, error_type, step=step)
        return None

    async def _journal_failed_attempt(self, step: str, kind: str, failure: Failure, *,
                                      final: bool, **changes: Any) -> None:
        """Journal a failed attempt of ``step``'s ``kind`` call (``final``: for good); an
        action whose effect may have happened all the same is remembered as uncertain, so
        that a compensation (or a fence) takes care of it."""
        uncertain = list(self.record.uncertain)
        if failure.uncertain and kind == "action" and step not in uncertain:
            uncertain.append(step)
        await self._commit(
            Event.attempt_failed(kind), step=step, uncertain=uncertain,
            detail={"error": failure.error, "error_type": failure.error_type, "final": final},
            **changes)

    async def _with_retries(self, call: Call) -> Outcome:
        """The one retry loop of steps and reactions: each attempt journaled before it is
        sent (a resend after a crash uses the same attempt and key), a stop checked before
        each (a cancel, the deadline, a failed sibling), each failure journaled, backoff
        between attempts, until it succeeds or fails for good."""
        attempt, resend = call.attempt, call.resend
        while True:
            stopped = call.stop(attempt, resend)
            if stopped is not None:
                return {}, stopped
            if resend:
                if not self._admitted:  # (admission journals a first send: not a restart)
                    logger.info("re-sending {} {} attempt {} after a restart", call.kind,
                                call.step, attempt)
            else:
                attempt += 1
                await self._commit(
                    Event.sent(call.kind), step=call.step,
                    status=(SagaStatus.PENDING if call.kind == "action"
                            else SagaStatus.COMPENSATING), **call.sent_changes(attempt))
            resend = False
            with logger.contextualize(step=call.step, attempt=attempt, kind=call.kind):
                output, failure = await call.send(attempt)
                if failure is None:
                    return output, None
                give_up = not failure.retryable or (
                    not call.forever and attempt >= call.policy.max_attempts)
                await self._journal_failed_attempt(call.step, call.kind, failure,
                                                   final=give_up, **call.failed_changes(attempt))
                logger.warning("{} {} attempt {} failed{}: {}", call.kind, call.step, attempt,
                               " for good" if give_up else "", failure.error)
                if give_up:
                    return {}, failure
                await self._pause(call.policy.backoff_s(attempt, self._rng))

    async def _send(self, participant: str, request: StepRequest, timeout_s: float,
                    policy: RetryPolicy, *, stoppable: bool,
                    timed_out: Callable[[Exception], Failure | None] = lambda exc: None,
                    ) -> Outcome:
        """One participant call. ``stoppable``: a halt (:meth:`nudge`) cancels it
        mid-call, and :meth:`_halted` says why (its effect is then unknown). No answer in time
        or a lost participant: an outcome unknown, worth retrying (or ``timed_out(exc)``,
        a reaction's deadline). A refusal: retryable as ``policy`` says."""
        call = asyncio.ensure_future(self._gateway.call(participant, request, timeout_s))
        if stoppable:
            self._calls.add(call)
        try:
            reply = await call
        except asyncio.CancelledError:
            me = asyncio.current_task()
            failure = self._halted(uncertain=True) if stoppable else None
            if failure is None or (me is not None and me.cancelling()):
                raise  # not ours: the whole instance is being cancelled
            return {}, failure
        except StepTimeoutError as exc:
            return {}, timed_out(exc) or Failure.unknown(exc)
        except ParticipantUnavailableError as exc:
            return {}, Failure.unknown(exc)
        finally:
            self._calls.discard(call)
        if reply.ok:
            if reply.replica is not None:
                self._served_by[(request.step, request.kind)] = reply.replica
            return reply.output, None
        retryable = policy.is_retryable(reply.error_type or "", reply.retryable)
        return {}, Failure.refused(reply.error_type or "Error", reply.error or "",
                                   retryable=retryable)
