"""One choreographed reaction's participant call, with its retries and deadline, the
settling of one whose outcome is unknown, and what a failure undoes. A part of
:class:`~saga_actors.engine.choreography.ChoreographyInstance`. No Ray."""

from __future__ import annotations

from typing import Any

from saga_actors.engine import bus_log
from saga_actors.engine.failures import Failure, compensation_order
from saga_actors.engine.runner import Call, Outcome
from saga_actors.model.choreography import Reaction
from saga_actors.model.messages import StepRequest
from saga_actors.model.records import Branch, BusEvent


class ReactionCalls:
    """The reaction-calling part of a choreographed saga's instance: a forward reaction's
    call stands in the record's ``branches`` (several run side by side), a compensating
    reaction's in ``current_step`` (they run one at a time)."""

    async def _settle_reaction(self, reaction: Reaction,
                               failure: Failure) -> Outcome | None:
        """A handler whose outcome is unknown is settled by its participant before anything
        is published: applied, its recorded output (the saga goes on); not applied, fenced
        so that it never will. Unknowable past the retry budget: STUCK (None)."""
        answer = await self._settle(
            reaction.participant, reaction.step, reaction.timeout_s, reaction.retry,
            f"{reaction.name!r}", failure.error, failure.error_type)
        if answer is None:
            return None
        if answer.get("applied"):
            return answer.get("output") or {}, None
        return {}, failure.settled_not_applied()

    # --- one reaction, with retries ---------------------------------------------------

    async def _call_with_retries(self, reaction: Reaction, causes: list[BusEvent]) -> Outcome:
        """``reaction``'s handler call through the runner's retry loop, within the
        reaction's deadline (counted from the first of the events it reacts to)."""
        rec = self.record
        kind, step = reaction.kind, reaction.step
        if kind == "action":
            slot = rec.branches.get(step) or Branch()
        else:
            resuming = rec.current_step == step and rec.phase == kind
            slot = Branch(attempt=rec.attempt, in_flight=rec.in_flight) if resuming else Branch()
        start = min(e.at for e in causes)
        deadline = start + reaction.deadline_s if reaction.deadline_s else None

        def stop(attempt: int, resend: bool) -> Failure | None:
            if deadline is not None and self._clock.now() >= deadline:
                return Failure.past_deadline(
                    "ReactionTimedOut", f"no {reaction.publishes} within "
                    f"{reaction.deadline_s:g}s", uncertain=attempt > 0)
            if kind == "action" and attempt:
                return self._halted(uncertain=resend or self._in_doubt(reaction))
            return None

        def changes(in_flight: bool):
            if kind == "compensation":
                return lambda attempt: {"current_step": step, "phase": kind,
                                        "attempt": attempt, "in_flight": in_flight}
            def fields(attempt: int) -> dict[str, Any]:
                branches = {**self.record.branches,
                            step: Branch(attempt=attempt, in_flight=in_flight)}
                return {"step_attempt": attempt, "branches": branches, "current_step": step,
                        "phase": kind, "attempt": attempt,
                        "in_flight": any(b.in_flight for b in branches.values())}
            return fields

        async def send(attempt: int) -> Outcome:
            self._at(f"{step}:{kind}:sent")
            output, failure = await self._attempt(causes, reaction, attempt, deadline)
            if failure is None:
                self._at(f"{step}:{kind}:replied")
            return output, failure

        return await self._with_retries(Call(
            step=step, kind=kind, policy=reaction.retry, attempt=slot.attempt,
            resend=slot.in_flight,
            send=send,
            stop=stop, failed_changes=changes(False), sent_changes=changes(True)))

    async def _attempt(self, causes: list[BusEvent], reaction: Reaction, attempt: int,
                       deadline: float | None) -> Outcome:
        rec = self.record
        data = (bus_log.data_of(rec.events) if reaction.kind == "compensation"
                else bus_log.data_of(causes))
        request = StepRequest.model_construct(
            saga_id=rec.saga_id, saga_type=rec.saga_type, version=rec.version,
            step=reaction.step, kind=reaction.kind, method=reaction.handler, attempt=attempt,
            data=data, action_output=None, event=causes[-1].type)
        timeout = reaction.timeout_s
        if deadline is not None:
            timeout = max(0.001, min(timeout, deadline - self._clock.now()))

        def timed_out(exc: Exception) -> Failure | None:
            if deadline is None or self._clock.now() < deadline:
                return None
            return Failure.past_deadline(type(exc).__name__, str(exc), uncertain=True)

        return await self._send(reaction.participant, request, timeout, reaction.retry,
                                stoppable=reaction.kind == "action", timed_out=timed_out)

    def _undo_order(self, failure: str, uncertain: list[str] | None = None) -> list[str]:
        """What ``failure`` undoes, newest first (:func:`compensation_order`), less what
        was undone already."""
        rec, c = self.record, self.definition
        order = compensation_order(rec.completed, rec.uncertain if uncertain is None
                                   else uncertain,
                                   lambda step: c.compensation_for(step, failure) is not None)
        return [s for s in order if s not in rec.compensated]

    def _waiting(self) -> list:
        """:func:`bus_log.waiting` of the log as it is (kept until the log grows)."""
        if not self.definition.waits:
            return []
        size = len(self.record.events)
        if self._waits_of[0] != size:
            self._waits_of = (size, bus_log.waiting(self.definition, self.record))
        return self._waits_of[1]

    def _in_doubt(self, reaction: Reaction) -> bool:
        rec = self.record
        slot = rec.branches.get(reaction.step)
        return reaction.step in rec.uncertain or bool(slot and slot.in_flight)


def where_fields(branches: dict[str, Branch]) -> dict[str, Any]:
    """The record's one-call fields (``current_step``, ``in_flight``...) from the branches
    under way: the latest of them (the supervisor's stall limit, ``list``'s STEP)."""
    if not branches:
        return {"current_step": None, "phase": None, "attempt": 0, "in_flight": False}
    step, slot = list(branches.items())[-1]
    return {"current_step": step, "phase": "action", "attempt": slot.attempt,
            "in_flight": any(b.in_flight for b in branches.values())}
