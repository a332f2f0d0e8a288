"""A saga whose first step is a participant's action is journaled at admission with that
action already sent: one write where there were two. The runner sends it at once, as the
resend of a journaled attempt. What that write must still do: if the process running the
saga dies after the participant applied the action and before the journal holds the
answer, the saga that resumes knows the action may have happened, and undoes it when it
must go back. No Ray: real participants with their SQLite stores, a journal in memory."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.engine.admission import admit
from saga_actors.engine.orchestration import SagaInstance
from saga_actors.engine.startable import start_record
from saga_actors.journal import open_journal
from saga_actors.model.messages import StepRequest
from saga_actors.testing.testkit import FakeClock


class InProcess:
    """The participants, called in this process (their idempotency is the real one)."""

    def __init__(self, store_dir: Path) -> None:
        self.parts = {cls.name: cls(store=store_dir / f"{cls.name}.sqlite")
                      for cls in PARTICIPANTS}

    async def call(self, participant, request, timeout_s):
        return await self.parts[participant].handle(request)

    async def fence(self, participant, saga_id, step, timeout_s):
        return await self.parts[participant].fence(saga_id, step)

    def applied(self, saga_id: str) -> list[str]:
        return sorted(e["method"] for p in self.parts.values() for e in p.ledger(saga_id))


def first_call_then_crash(tmp_path: Path, *, opened: bool) -> tuple[InProcess, object, str]:
    """Admit a saga, apply its first action as its runner would, and let the runner die
    before the journal holds the answer. ``opened=False``: as if admission had journaled
    only the start (the write the opening saves was not made at all)."""
    gateway, journal = InProcess(tmp_path), open_journal(f"memory://{uuid.uuid4().hex}")
    clock = FakeClock()
    record, _ = start_record(ORDER_FULFILLMENT, sample_input(1), "o-1", "hosted",
                             now=clock.now(), lookup=lambda name: None)
    assert record.seq == 1 and record.in_flight and record.current_step == "reserve_inventory"
    if not opened:
        record, _ = start_record(ORDER_FULFILLMENT, sample_input(1), "o-1", "hosted",
                                 now=clock.now(), lookup=lambda name: None)
        record = record.model_copy(update={
            "seq": 0, "status": SagaStatus.STARTED, "current_step": None, "phase": None,
            "attempt": 0, "in_flight": False})
    admit(journal, record)
    request = StepRequest(saga_id="o-1", saga_type=record.saga_type, step="reserve_inventory",
                          kind="action", method="reserve_inventory", attempt=1,
                          data=record.data)
    assert asyncio.run(gateway.call("inventory", request, 5)).ok  # applied; the runner died
    return gateway, journal, clock


def resume(gateway: InProcess, journal, clock) -> object:
    instance = SagaInstance(ORDER_FULFILLMENT, journal.load("o-1"), journal, gateway,
                            clock=clock)
    return asyncio.run(instance.run())


def test_the_first_action_sent_at_admission_goes_out_as_a_resend_without_a_write(tmp_path):
    gateway, journal = InProcess(tmp_path), open_journal(f"memory://{uuid.uuid4().hex}")
    clock = FakeClock()
    record, _ = start_record(ORDER_FULFILLMENT, sample_input(1), "o-1", "hosted",
                             now=clock.now(), lookup=lambda name: None)
    admit(journal, record)
    assert [(t.event.value, t.step, t.attempt) for t in journal.history("o-1")] == [
        ("saga_started", None, 0), ("action_sent", "reserve_inventory", 1)]
    instance = SagaInstance(ORDER_FULFILLMENT, journal.load("o-1"), journal, gateway,
                            clock=clock, admitted=True)
    assert asyncio.run(instance.run()).status is SagaStatus.COMPLETED
    events = [(t.event.value, t.step) for t in journal.history("o-1")]
    # sent once (at admission), with no resume journaled before the send
    assert events[:3] == [("saga_started", None), ("action_sent", "reserve_inventory"),
                          ("step_succeeded", "reserve_inventory")]
    assert gateway.applied("o-1") == ["create_shipment", "process_payment",
                                      "reserve_inventory"]


@pytest.mark.parametrize("opened", [True, False])
def test_a_crash_after_the_first_action_applied_is_undone_past_the_deadline(tmp_path,
                                                                            opened):
    """The runner dies once the participant applied the first action; the saga resumes
    past its deadline and compensates. The send journaled at admission is what makes it
    undo that action: without it (``opened=False``) the reservation would stay forever."""
    gateway, journal, clock = first_call_then_crash(tmp_path, opened=opened)
    clock.t += ORDER_FULFILLMENT.deadline_s + 1
    rec = resume(gateway, journal, clock)
    assert rec.status is SagaStatus.FAILED
    if opened:
        assert rec.compensated == ["reserve_inventory"]
        assert gateway.applied("o-1") == ["release_inventory", "reserve_inventory"]
        assert ("resumed", None) in [(t.event.value, None) for t in journal.history("o-1")]
    else:  # the write it saves was needed: the applied reservation leaks
        assert rec.compensated == []
        assert gateway.applied("o-1") == ["reserve_inventory"]
