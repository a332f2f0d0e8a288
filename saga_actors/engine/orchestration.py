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

from saga_actors.engine.catalog import Catalog
from saga_actors.engine.children import nudge_child, run_child, undo_child
from saga_actors.engine.failures import SIGNAL_ID, Failure, checked_output, compensation_order
from saga_actors.engine.runner import Gateway, JournaledRun
from saga_actors.engine.signals import wait_for_signal
from saga_actors.engine.step_calls import StepCalls
from saga_actors.journal.base import Journal
from saga_actors.model.definition import Saga, Step, StepKind
from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord
from saga_actors.model.state import SagaStatus


class SagaInstance(StepCalls, JournaledRun):
    """Runs one saga to a terminal state, journaling each transition before acting on it."""

    def __init__(self, definition: Saga, record: SagaRecord, journal: Journal,
                 gateway: Gateway, *, definitions: Catalog | None = None,
                 **options: Any) -> None:
        super().__init__(definition, record, journal, gateway, **options)
        self.definitions = definitions  # where child steps find their sagas' definitions
        self.children: dict[str, SagaInstance] = {}  # child sagas running now, by id

    def nudge(self) -> None:
        super().nudge()
        for child in list(self.children.values()):
            nudge_child(self, child)

    # --- what JournaledRun asks ----------------------------------------------------

    def _cancel_refusal(self) -> str | None:
        if not self._past_pivot():
            return None
        pivot = next(s for s in self.record.completed
                     if self.definition.step(s).kind is StepKind.PIVOT)
        return f"it is past its pivot {pivot!r} (it can only go forward)"

    async def _advance(self) -> None:
        if self.record.status is SagaStatus.COMPENSATING:
            await self._compensate()
        else:
            await self._forward()

    async def _forward(self) -> None:
        steps = self.definition.steps
        while self.record.cursor < len(steps):
            group = self.definition.steps_at(self.record.cursor)
            if len(group) > 1:
                if not await self._forward_group(group):
                    return
                continue
            step = group[0]
            abort = self._abort_reason()
            in_doubt = self._in_doubt(step)
            if abort and step.kind is not StepKind.PIVOT:
                # a step sent before a crash and never answered may have happened: undo it too
                await self._begin_compensation(abort, self._abort_type(),
                                               in_doubt=[step.name] if in_doubt else [])
                return
            started_at = self._clock.now()
            if abort:  # a pivot: if it may have happened, settle it before anything else
                output, failure = {}, Failure.aborted(self._abort_type(), abort,
                                                       uncertain=in_doubt)
            else:
                output, failure = await self._run_step(step)
            if failure is not None and step.kind is StepKind.PIVOT and (
                    failure.uncertain or step.name in self.record.uncertain):
                settled = await self._settle_pivot(step, failure)
                if settled is None:
                    return  # parked STUCK: neither forward nor back is known to be right
                output, failure = settled
            if failure is not None:
                await self._failed_for_good(step, failure)
                return
            await self._succeeded(step, output, started_at, last=True)
        await self._commit(
            Event.SAGA_COMPLETED, status=SagaStatus.COMPLETED, finished_at=self._clock.now()
        )

    async def _succeeded(self, step: Step, output: dict[str, Any], started_at: float, *,
                         last: bool) -> None:
        """Journal a step's success; ``last``: it ends its group (or is a lone step), so
        the cursor moves past it."""
        rec = self.record
        changes: dict[str, Any] = {}
        if last:
            changes = {"cursor": rec.cursor + len(self.definition.steps_at(rec.cursor)),
                       "current_step": None, "phase": None, "attempt": 0,
                       "in_flight": False, "wait_until": None, "branches": {}}
        else:
            changes = {"branches": {k: v for k, v in rec.branches.items() if k != step.name}}
        taken = output.pop(SIGNAL_ID, None)
        if taken:
            changes["signals_taken"] = [*rec.signals_taken, taken]
        await self._commit(
            Event.STEP_SUCCEEDED,
            defer=True,
            detail={"latency_s": round(self._clock.now() - started_at, 6),
                    **({"signal_id": taken} if taken else {})},
            status=SagaStatus.PENDING,
            step=step.name,
            data={**rec.data, **output},
            outputs={**rec.outputs, step.name: output},
            completed=[*rec.completed, step.name],
            **changes,
        )

    async def _forward_group(self, group: tuple[Step, ...]) -> bool:
        """Run a parallel group's unfinished steps at once; True when all succeeded. The
        first that fails for good stops the others (their calls are cancelled; those whose
        outcome is then unknown are compensated with the rest)."""
        rec = self.record
        todo = [s for s in group if s.name not in rec.completed]
        if not todo:  # the last success moves the cursor in the same transition
            raise RuntimeError(f"group {group[0].group!r} is done but the cursor is at it")
        abort = self._abort_reason()
        if abort:
            await self._begin_compensation(abort, self._abort_type(),
                                           in_doubt=[s.name for s in todo if self._in_doubt(s)])
            return False
        started_at = self._clock.now()
        branches = {asyncio.ensure_future(self._run_step(s)): s for s in todo}
        failed: tuple[Step, Failure] | None = None
        try:
            while branches:
                done, _ = await asyncio.wait(branches, return_when=asyncio.FIRST_COMPLETED)
                for call in done:
                    step = branches.pop(call)
                    output, failure = call.result()
                    if failure is None:
                        last = not branches and failed is None
                        await self._succeeded(step, output, started_at, last=last)
                    elif failed is None:
                        failed = (step, failure)
                        self.stop_branches(f"step {step.name!r} of the group failed")
        finally:
            self.stop_branches(None)
            for call in branches:  # only when this task itself is cancelled
                call.cancel()
        if failed is None:
            return True
        await self._failed_for_good(*failed)
        return False

    async def _failed_for_good(self, step: Step, failure: Failure) -> None:
        """A step failed for good: park the saga if neither way is known to be right (a
        STUCK child, a child type nobody registered), else compensate."""
        if failure.park:
            await self._park(failure.error, failure.error_type, step=step.name)
            return
        abort = self._abort_reason()
        await self._begin_compensation(
            abort or f"step {step.name!r} failed: {failure.error}",
            self._abort_type() if abort else failure.error_type,
            in_doubt=[step.name] if failure.uncertain else [], step=step.name)

    async def _run_step(self, step: Step) -> tuple[dict[str, Any], Failure | None]:
        """A step's action: a participant call (with retries), a child saga, or a wait."""
        if step.child:
            return await run_child(self, step)
        if step.signal:
            return await wait_for_signal(self, step)
        return await self._call_with_retries(step, "action")

    async def _settle_pivot(
        self, step: Step, failure: Failure
    ) -> tuple[dict[str, Any], Failure | None] | None:
        """A pivot whose outcome is unknown can be neither compensated nor assumed done:
        its participant settles it (:meth:`JournaledRun._settle`, as patient as undoing).
        Applied: its output, and the saga goes forward. Not applied (and now never will
        be): a certain failure, and the saga compensates. Unknown past the budget, or
        applied with an invalid output: STUCK (None)."""
        answer = await self._settle(
            step.participant, step.name, step.timeout_s, step.policy("compensation"),
            f"pivot {step.name!r}", failure.error, failure.error_type)
        if answer is None:
            return None
        if not answer.get("applied"):
            return {}, failure.settled_not_applied()
        try:
            return checked_output(step, answer.get("output") or {}), None
        except ValueError as exc:
            await self._park(f"pivot {step.name!r} applied, but its output is invalid: {exc}",
                             "InvalidOutput", step=step.name)
            return None

    async def _begin_compensation(self, reason: str, error_type: str, *,
                                  in_doubt: list[str], step: str | None = None) -> None:
        rec = self.record
        if self._past_pivot():
            # After the pivot the saga only goes forward: a step that failed for good (a
            # non-retryable error, an invalid output) never undoes what came before it.
            pivot = next(s for s in rec.completed
                         if self.definition.step(s).kind is StepKind.PIVOT)
            await self._park(f"{reason} (past the pivot {pivot!r}: nothing is compensated; "
                             "retry or resolve)", error_type,
                             step=step or (in_doubt[0] if in_doubt else pivot))
            return
        uncertain = list(rec.uncertain)
        uncertain += [s for s in in_doubt if s not in uncertain]
        todo = compensation_order(rec.completed, uncertain,
                                  lambda name: self.definition.step(name).undoable)
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
            wait_until=None,
            branches={},
            detail={"reason": reason, "error_type": error_type, "to_compensate": todo},
        )

    async def _compensate(self) -> None:
        while self.record.to_compensate:
            step = self.definition.step(self.record.to_compensate[0])
            if step.child:
                failure = await undo_child(self, step)
            else:
                _, failure = await self._call_with_retries(step, "compensation")
            if failure is not None:
                await self._park(f"compensation of {step.name!r} failed: {failure.error}",
                                 failure.error_type, step=step.name)
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

    # --- helpers --------------------------------------------------------------------

    def _in_doubt(self, step: Step) -> bool:
        """Whether ``step``'s action may have applied without the saga knowing: an attempt
        ended uncertain, or one was sent and the process died before its answer."""
        return step.name in self.record.uncertain or self.slot(step, "action").in_flight

    def _past_pivot(self) -> bool:
        return self.definition.past_pivot(self.record.completed)

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
