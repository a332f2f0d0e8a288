"""The users' test kit (saga_actors.testing.SagaTestKit): fakes with the real idempotency,
every kind of injected fault, and clear errors for a kit set up wrong. No Ray."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from saga_actors import NonRetryableError, RetryPolicy, Saga, SagaStatus, SagaUsageError, Step
from saga_actors.testing import SagaTestKit


class Order(BaseModel):
    order_id: str


TRANSFER = Saga(name="transfer", input_model=Order, deadline_s=30, steps=[
    Step(name="debit", participant="ledger", compensation="credit_back", timeout_s=2,
         retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.5)),
    Step(name="notify", participant="crm", compensation="unnotify", timeout_s=2),
])


def test_fakes_run_with_real_idempotency_and_compensate_in_reverse():
    seen = []
    kit = SagaTestKit(TRANSFER, fakes={
        "ledger": {"debit": lambda ctx: seen.append(ctx.step) or {"debited": 5}},
        "crm": {"notify": lambda ctx: (_ for _ in ()).throw(NonRetryableError("no such "
                                                                              "customer"))},
    })
    rec = kit.run({"order_id": "o1"})
    assert rec.status is SagaStatus.FAILED and "no such customer" in rec.error
    assert rec.compensated == ["debit"]
    assert kit.effects("ledger") == {"debit": 1, "credit_back": 1}
    assert kit.effects("crm") == {}


def test_a_crash_while_compensating_resumes_and_compensates_once():
    kit = SagaTestKit(TRANSFER, fakes={"ledger": {}, "crm": {}})
    kit.inject("notify", fail=True)
    kit.inject("debit", kind="compensation", crash="sent")
    rec = kit.run({"order_id": "o2"})
    assert rec.status is SagaStatus.FAILED and kit.crashes == 1
    assert kit.effects("ledger") == {"debit": 1, "credit_back": 1}


def test_timeouts_on_every_attempt_skip_time_and_end_in_compensation():
    kit = SagaTestKit(TRANSFER, fakes={"ledger": {}, "crm": {}})
    kit.inject("notify", timeout=True)  # every attempt: applied, reply lost
    rec = kit.run({"order_id": "o3"})
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["notify", "debit"]  # an uncertain step is undone too
    assert kit.effects("crm") == {"notify": 1, "unnotify": 1}
    assert sum(kit.clock.sleeps) >= 2  # the step's timeout, on the fake clock


def test_a_kit_set_up_wrong_says_what_is_wrong():
    with pytest.raises(SagaUsageError, match=r"no participant named \['crm'\]"):
        SagaTestKit(TRANSFER, fakes={"ledger": {}})
    with pytest.raises(SagaUsageError, match="'refund' are not methods of ledger|"
                                              r"\['refund'\] are not methods"):
        SagaTestKit(TRANSFER, fakes={"ledger": {"refund": lambda ctx: {}}, "crm": {}})
    from participants.payment import Payment

    wrong = TRANSFER.model_copy(update={"steps": (TRANSFER.steps[0].model_copy(
        update={"participant": "payment"}),)})
    with pytest.raises(SagaUsageError, match="unknown participant 'payment' method 'credit_back'"):
        SagaTestKit(wrong, [Payment])
    kit = SagaTestKit(TRANSFER, fakes={"ledger": {}, "crm": {}})
    with pytest.raises(SagaUsageError, match="'ship' is not a step of transfer"):
        kit.inject("ship", fail=True)
    with pytest.raises(ValidationError):
        kit.inject("debit", explode=True)
    with pytest.raises(ValidationError):
        kit.inject("debit", crash="later")
