"""The saga instance: an asyncio state machine that imports no Ray.

It journals every transition *before* acting on it, so that whatever process runs it can
die at any point and a new instance built from the journal carries on: a step whose
outcome was not journaled is re-sent with the same idempotency key, and the participant
returns the recorded outcome instead of applying the effect twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger
from pydantic import ValidationError

from saga_actors.admission import validation_brief
from saga_actors.definition import Saga, Step, StepKind
from saga_actors.errors import (
    ParticipantUnavailableError,
    StepTimeoutError,
)
from saga_actors.events import Event
from saga_actors.journal.base import Journal
from saga_actors.journaled import Gateway, JournaledRun
from saga_actors.messages import (
    Kind,
    StepRequest,
    encode_json,
)
from saga_actors.records import SagaRecord
from saga_actors.state import SagaStatus


class _Failure:
    """Why a call did not succeed (its error's type and message), whether retrying may
    help, and whether its effect might have happened all the same."""

    __slots__ = ("error", "error_type", "retryable", "uncertain")

    def __init__(self, error_type: str, error: str, *, retryable: bool,
                 uncertain: bool) -> None:
        self.error_type = error_type
        self.error = error
        self.retryable = retryable
        self.uncertain = uncertain

    @classmethod
    def refused(cls, error_type: str, error: str, *, retryable: bool) -> _Failure:
        """The participant answered with a failure: its effect did not happen."""
        return cls(error_type, f"{error_type}: {error}", retryable=retryable, uncertain=False)

    @classmethod
    def unknown(cls, exc: Exception) -> _Failure:
        """No answer (a timeout, a lost actor): the effect may have happened; retryable."""
        return cls(type(exc).__name__, str(exc), retryable=True, uncertain=True)

    @classmethod
    def aborted(cls, error_type: str, reason: str, *, uncertain: bool) -> _Failure:
        """A cancel or the deadline stopped the step (mid-call: ``uncertain``)."""
        return cls(error_type, reason, retryable=False, uncertain=uncertain)

    @classmethod
    def bad_output(cls, problem: str) -> _Failure:
        """The participant applied its effect but answered with unusable output."""
        return cls("InvalidOutput", f"invalid output: {problem}", retryable=False,
                   uncertain=True)

    def settled_not_applied(self) -> _Failure:
        """The same failure, once the participant fenced the effect: it never happened."""
        return _Failure(self.error_type, self.error, retryable=False, uncertain=False)


class SagaInstance(JournaledRun):
    """Runs one saga to a terminal state, journaling each transition before acting on it."""

    def __init__(self, definition: Saga, record: SagaRecord, journal: Journal,
                 gateway: Gateway, **options: Any) -> None:
        super().__init__(definition, record, journal, gateway, **options)
        self._step_started_at = self._clock.now()

    # --- what JournaledRun asks ----------------------------------------------------

    def _cancellable(self) -> bool:
        return not self._past_pivot()  # past the pivot a saga only goes forward

    async def _advance(self) -> None:
        if self.record.status is SagaStatus.COMPENSATING:
            await self._compensate()
        else:
            await self._forward()

    async def _forward(self) -> None:
        steps = self.definition.steps
        while self.record.cursor < len(steps):
            step = steps[self.record.cursor]
            abort = self._abort_reason()
            in_doubt = self._in_doubt(step)
            if abort and step.kind is not StepKind.PIVOT:
                # a step sent before a crash and never answered may have happened: undo it too
                await self._begin_compensation(abort, self._abort_type(),
                                               failed_step=step.name if in_doubt else None)
                return
            self._step_started_at = self._clock.now()
            if abort:  # a pivot: if it may have happened, settle it before anything else
                output, failure = {}, _Failure.aborted(self._abort_type(), abort,
                                                       uncertain=in_doubt)
            else:
                output, failure = await self._call_with_retries(step, "action")
            if failure is not None and step.kind is StepKind.PIVOT and (
                    failure.uncertain or step.name in self.record.uncertain):
                settled = await self._settle_pivot(step, failure)
                if settled is None:
                    return  # parked STUCK: neither forward nor back is known to be right
                output, failure = settled
            if failure is not None:
                abort = self._abort_reason()
                await self._begin_compensation(
                    abort or f"step {step.name!r} failed: {failure.error}",
                    self._abort_type() if abort else failure.error_type,
                    failed_step=step.name if failure.uncertain else None, step=step.name)
                return
            data = {**self.record.data, **output}
            await self._commit(
                Event.STEP_SUCCEEDED,
                defer=True,
                detail={"latency_s": round(self._clock.now() - self._step_started_at, 6)},
                status=SagaStatus.PENDING,
                step=step.name,
                data=data,
                outputs={**self.record.outputs, step.name: output},
                completed=[*self.record.completed, step.name],
                cursor=self.record.cursor + 1,
                current_step=None,
                phase=None,
                attempt=0,
                in_flight=False,
            )
        await self._commit(
            Event.SAGA_COMPLETED, status=SagaStatus.COMPLETED, finished_at=self._clock.now()
        )

    async def _settle_pivot(
        self, step: Step, failure: _Failure
    ) -> tuple[dict[str, Any], _Failure | None] | None:
        """A pivot whose outcome is unknown (a timeout, a crash, a cancel or the deadline
        mid-call) can be neither compensated nor assumed done: its participant settles it
        (:meth:`Gateway.fence`). Applied: its output, and the saga goes forward. Not applied
        (and now never will be): a certain failure, and the saga compensates. Unknown past
        the compensation retry budget, or applied with an invalid output: STUCK (None)."""
        policy = step.policy("compensation")  # settling is as patient as undoing
        reason = f"pivot {step.name!r}: outcome unknown ({failure.error})"
        error_type = failure.error_type
        for attempt in range(1, policy.max_attempts + 1):
            try:
                answer = await self._gateway.fence(step.participant, self.saga_id, step.name,
                                                   step.timeout_s)
            except (StepTimeoutError, ParticipantUnavailableError) as exc:
                logger.warning("settling pivot {} (try {}): {}", step.name, attempt, exc)
                reason = f"pivot {step.name!r}: outcome unknown ({exc})"
                error_type = type(exc).__name__
                if attempt < policy.max_attempts:
                    await self._pause(policy.backoff_s(attempt, self._rng))
                continue
            applied = bool(answer.get("applied"))
            await self._commit(Event.PIVOT_SETTLED, step=step.name, detail={"applied": applied},
                               uncertain=[s for s in self.record.uncertain if s != step.name])
            if not applied:
                return {}, failure.settled_not_applied()
            try:
                return _checked_output(step, answer.get("output") or {}), None
            except ValueError as exc:
                reason = f"pivot {step.name!r} applied, but its output is invalid: {exc}"
                error_type = "InvalidOutput"
                break
        await self._park(reason, error_type, step=step.name)
        return None

    async def _park(self, reason: str, error_type: str, *, step: str) -> None:
        """Park a saga that may neither go forward nor back STUCK, for an operator to
        ``retry`` (forward again, from this step) or ``resolve``."""
        await self._commit(
            Event.SAGA_STUCK,
            status=SagaStatus.STUCK,
            stuck_from=SagaStatus.PENDING,
            step=step,
            error=reason,
            finished_at=self._clock.now(),
            in_flight=False,
            detail={"error": reason, "error_type": error_type},
        )
        logger.error("saga STUCK: {}", reason)

    async def _begin_compensation(self, reason: str, error_type: str, *,
                                  failed_step: str | None, step: str | None = None) -> None:
        rec = self.record
        if self._past_pivot():
            # After the pivot the saga only goes forward: a step that failed for good (a
            # non-retryable error, an invalid output) never undoes what came before it.
            pivot = next(s for s in rec.completed
                         if self.definition.step(s).kind is StepKind.PIVOT)
            await self._park(f"{reason} (past the pivot {pivot!r}: nothing is compensated; "
                             "retry or resolve)", error_type, step=step or failed_step or pivot)
            return
        uncertain = list(rec.uncertain)
        if failed_step and failed_step not in uncertain:
            uncertain.append(failed_step)
        order = [*rec.completed, *[s for s in uncertain if s not in rec.completed]]
        todo = [
            name
            for name in reversed(order)
            if self.definition.step(name).kind is StepKind.COMPENSATABLE
        ]
        logger.warning("compensating {} step(s): {}", len(todo), reason)
        await self._commit(
            Event.COMPENSATION_STARTED,
            status=SagaStatus.COMPENSATING,
            error=reason,
            to_compensate=todo,
            uncertain=uncertain,
            current_step=None,
            phase=None,
            attempt=0,
            in_flight=False,
            detail={"reason": reason, "error_type": error_type, "to_compensate": todo},
        )

    async def _compensate(self) -> None:
        while self.record.to_compensate:
            step = self.definition.step(self.record.to_compensate[0])
            _, failure = await self._call_with_retries(step, "compensation")
            if failure is not None:
                await self._commit(
                    Event.SAGA_STUCK,
                    status=SagaStatus.STUCK,
                    stuck_from=SagaStatus.COMPENSATING,
                    step=step.name,
                    error=f"compensation of {step.name!r} failed: {failure.error}",
                    detail={"error": failure.error, "error_type": failure.error_type},
                    finished_at=self._clock.now(),
                    in_flight=False,
                )
                logger.error("saga STUCK: {}", self.record.error)
                return
            await self._commit(
                Event.STEP_COMPENSATED,
                step=step.name,
                to_compensate=self.record.to_compensate[1:],
                compensated=[*self.record.compensated, step.name],
                current_step=None,
                phase=None,
                attempt=0,
                in_flight=False,
            )
        await self._commit(Event.SAGA_FAILED, status=SagaStatus.FAILED,
                           finished_at=self._clock.now())

    # --- one step, with retries -----------------------------------------------------

    async def _call_with_retries(
        self, step: Step, kind: Kind
    ) -> tuple[dict[str, Any], _Failure | None]:
        rec = self.record
        policy = step.policy(kind)
        forever = kind == "action" and step.kind is StepKind.RETRIABLE
        resuming = rec.current_step == step.name and rec.phase == kind
        attempt = rec.attempt if resuming else 0
        resend = resuming and rec.in_flight
        while True:
            abort = self._abort_reason() if kind == "action" and attempt else None
            if abort:
                return {}, _Failure.aborted(self._abort_type(), abort, uncertain=resend)
            if resend:
                logger.info("re-sending {} {} attempt {} after a restart", kind, step.name, attempt)
            else:
                attempt += 1
                await self._commit(
                    Event.sent(kind),
                    status=SagaStatus.PENDING if kind == "action" else SagaStatus.COMPENSATING,
                    step=step.name,
                    current_step=step.name,
                    phase=kind,
                    attempt=attempt,
                    in_flight=True,
                )
            resend = False
            with logger.contextualize(step=step.name, attempt=attempt, kind=kind):
                self._at(f"{step.name}:{kind}:sent")
                output, failure = await self._attempt(step, kind, attempt)
                if failure is None:
                    self._at(f"{step.name}:{kind}:replied")
                    return output, None
                give_up = not failure.retryable or (
                    not forever and attempt >= policy.max_attempts
                )
                uncertain = list(self.record.uncertain)
                if failure.uncertain and kind == "action" and step.name not in uncertain:
                    uncertain.append(step.name)
                await self._commit(
                    Event.attempt_failed(kind),
                    step=step.name,
                    in_flight=False,
                    uncertain=uncertain,
                    detail={"error": failure.error, "error_type": failure.error_type,
                            "final": give_up},
                )
                logger.warning(
                    "{} {} attempt {} failed{}: {}",
                    kind,
                    step.name,
                    attempt,
                    " for good" if give_up else "",
                    failure.error,
                )
                if give_up:
                    return {}, failure
                await self._pause(policy.backoff_s(attempt, self._rng))

    async def _attempt(
        self, step: Step, kind: Kind, attempt: int
    ) -> tuple[dict[str, Any], _Failure | None]:
        rec = self.record
        request = StepRequest.model_construct(  # typed fields; the participant validates
            saga_id=rec.saga_id,
            saga_type=rec.saga_type,
            version=rec.version,
            step=step.name,
            kind=kind,
            method=step.action if kind == "action" else step.compensation or "",
            attempt=attempt,
            data=rec.data,
            action_output=rec.outputs.get(step.name) if kind == "compensation" else None,
        )
        timeout = step.timeout_s
        if kind == "action" and rec.deadline_at is not None and not self._past_pivot():
            timeout = max(0.001, min(timeout, rec.deadline_at - self._clock.now()))
        call = asyncio.ensure_future(self._gateway.call(step.participant, request, timeout))
        if kind == "action":
            self._in_flight = call  # a cancel or a deadline nudge stops it (see _wake_up)
        try:
            reply = await call
        except asyncio.CancelledError:
            abort = self._abort_reason()
            me = asyncio.current_task()
            ours = call is self._in_flight and abort is not None
            if not ours or (me is not None and me.cancelling()):
                raise  # not ours: the whole instance is being cancelled
            # A cancel or the deadline arrived mid-call: stopped; its effect is unknown.
            return {}, _Failure.aborted(self._abort_type(), abort, uncertain=True)
        except (StepTimeoutError, ParticipantUnavailableError) as exc:
            return {}, _Failure.unknown(exc)
        finally:
            self._in_flight = None
        if not reply.ok:
            policy = step.policy(kind)
            retryable = policy.is_retryable(reply.error_type or "", reply.retryable)
            return {}, _Failure.refused(reply.error_type or "Error", reply.error or "",
                                        retryable=retryable)
        if kind == "compensation":
            return reply.output, None
        try:
            output = _checked_output(step, reply.output)
            clash = sorted(set(output) & set(rec.data))
            if clash:
                raise ValueError(f"{clash} would overwrite the saga's data (its input or an "
                                 "earlier step's output): outputs are merged into ctx.data")
            return output, None
        except ValueError as exc:
            # The participant applied its effect but returned bad data: undo it.
            return {}, _Failure.bad_output(str(exc))

    # --- helpers --------------------------------------------------------------------

    def _at(self, point: str) -> None:
        if self._fault_point is not None:
            self._fault_point(self.record.saga_id, point)

    def _in_doubt(self, step: Step) -> bool:
        """Whether ``step``'s action may have applied without the saga knowing: an attempt
        ended uncertain, or one was sent and the process died before its answer."""
        rec = self.record
        return step.name in rec.uncertain or (
            rec.in_flight and rec.current_step == step.name and rec.phase == "action")

    def _past_pivot(self) -> bool:
        return self.definition.past_pivot(self.record.completed)

    def _abort_type(self) -> str:
        """The error type of an abort: the saga's state says which it is."""
        return "SagaCancelled" if self.record.cancel_reason else "DeadlineExceeded"

    def _abort_reason(self) -> str | None:
        rec = self.record
        if self._past_pivot():
            return None
        if rec.cancel_reason:
            return f"cancelled: {rec.cancel_reason}"
        if rec.deadline_at is not None and self._clock.now() >= rec.deadline_at:
            return f"deadline of {self.definition.deadline_s:g}s exceeded"
        return None

    async def _pause(self, seconds: float) -> None:
        """Back off, but not past the deadline (and wake early for a cancel)."""
        rec = self.record
        if rec.deadline_at is not None and not self._past_pivot():
            seconds = max(0.0, min(seconds, rec.deadline_at - self._clock.now()))
        await super()._pause(seconds)


def _checked_output(step: Step, output: Any) -> dict[str, Any]:
    if not isinstance(output, dict):
        raise ValueError(f"expected a dict, got {type(output).__name__}")
    encode_json(output)  # as given (a model would turn NaN into null); NotJSONError
    if step.output_model is not None:
        try:
            output = step.output_model.model_validate(output).model_dump(mode="json")
        except ValidationError as exc:
            raise ValueError(validation_brief(exc)) from None
    return output

