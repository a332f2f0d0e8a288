"""One orchestrated step's participant call, with its retries: attempts journaled before
they are sent, backoff, a halt (cancel, deadline, a failed sibling) that stops a call in
flight, and where each step's call stands (a parallel step keeps its own). A part of
:class:`~saga_actors.engine.orchestration.SagaInstance`. No Ray."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from saga_actors.engine.failures import Failure, checked_output
from saga_actors.engine.runner import Call
from saga_actors.model.definition import Step, StepKind
from saga_actors.model.messages import Kind, StepRequest
from saga_actors.model.records import Branch

if TYPE_CHECKING:
    pass


class StepCalls:
    """The step-calling part of a saga instance (mixed into :class:`SagaInstance`)."""

    async def _call_with_retries(
        self, step: Step, kind: Kind
    ) -> tuple[dict[str, Any], Failure | None]:
        """``step``'s ``kind`` call through the runner's retry loop."""
        slot = self.slot(step, kind)

        def stop(attempt: int, resend: bool) -> Failure | None:
            return self._halted(uncertain=resend) if kind == "action" and attempt else None

        async def send(attempt: int) -> tuple[dict[str, Any], Failure | None]:
            self._at(f"{step.name}:{kind}:sent")
            output, failure = await self._attempt(step, kind, attempt)
            if failure is None:
                self._at(f"{step.name}:{kind}:replied")
            return output, failure

        def changes(in_flight: bool) -> Callable[[int], dict[str, Any]]:
            return lambda attempt: {"step_attempt": attempt, **self.slot_changes(
                step, kind, Branch(attempt=attempt, in_flight=in_flight))}

        return await self._with_retries(Call(
            step=step.name, kind=kind, policy=step.policy(kind), attempt=slot.attempt,
            resend=slot.in_flight, send=send, stop=stop, sent_changes=changes(True),
            failed_changes=changes(False),
            forever=kind == "action" and step.kind is StepKind.RETRIABLE))

    async def _attempt_failed(self, step: Step, kind: Kind, attempt: int, failure: Failure,
                              *, final: bool) -> None:
        """Journal a failed attempt in ``step``'s own slot (a wait step's, a child's)."""
        await self._journal_failed_attempt(
            step.name, kind, failure, final=final, step_attempt=attempt,
            **self.slot_changes(step, kind, Branch(attempt=attempt)))

    def slot(self, step: Step, kind: Kind) -> Branch:
        """Where ``step``'s ``kind`` call stands: attempts so far, whether one is in flight
        (a parallel step keeps its own in the record's ``branches``)."""
        rec = self.record
        if step.group and kind == "action":
            return rec.branches.get(step.name) or Branch()
        if rec.current_step == step.name and rec.phase == kind:
            return Branch(attempt=rec.attempt, in_flight=rec.in_flight, until=rec.wait_until)
        return Branch()

    def slot_changes(self, step: Step, kind: Kind, slot: Branch) -> dict[str, Any]:
        """The record fields that say ``step`` now stands at ``slot``."""
        if step.group and kind == "action":
            return {"branches": {**self.record.branches, step.name: slot},
                    "current_step": step.group, "phase": kind}
        return {"current_step": step.name, "phase": kind, "attempt": slot.attempt,
                "in_flight": slot.in_flight, "wait_until": slot.until}

    async def _attempt(
        self, step: Step, kind: Kind, attempt: int
    ) -> tuple[dict[str, Any], Failure | None]:
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
        # a cancel, the deadline or a failed sibling mid-call stops an action's call
        output, failure = await self._send(step.participant, request, timeout,
                                           step.policy(kind), stoppable=kind == "action")
        if failure is not None or kind == "compensation":
            return output, failure
        try:
            output = checked_output(step, output)
            clash = sorted(set(output) & set(rec.data))
            if clash:
                raise ValueError(f"{clash} would overwrite the saga's data (its input or an "
                                 "earlier step's output): outputs are merged into ctx.data")
            return output, None
        except ValueError as exc:
            # The participant applied its effect but returned bad data: undo it.
            return {}, Failure.bad_output(str(exc))
