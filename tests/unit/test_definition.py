"""Definitions fail when they are defined, with a message that names the problem."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from saga_actors import RetryPolicy, Saga, SagaDefinitionError, Step, StepKind


class In(BaseModel):
    x: int = 0


def comp(name: str, **kw) -> Step:
    return Step(name=name, participant="p", compensation=f"undo_{name}", **kw)


def test_a_valid_saga_with_pivot_and_retriable_steps():
    saga = Saga(
        name="trip",
        input_model=In,
        steps=[
            comp("a"),
            Step(name="b", participant="q", kind=StepKind.PIVOT),
            Step(name="c", participant="q", kind=StepKind.RETRIABLE),
        ],
    )
    assert [s.action for s in saga.steps] == ["a", "b", "c"]
    assert saga.participants == {"p": {"a", "undo_a"}, "q": {"b", "c"}}


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (lambda: [comp("a"), comp("a")], "duplicate step name 'a'"),
        (
            lambda: [Step(name="p", participant="x", kind=StepKind.PIVOT), comp("b")],
            "compensatable step 'b' comes after the pivot 'p'",
        ),
        (
            lambda: [Step(name="r", participant="x", kind=StepKind.RETRIABLE)],
            "retriable step 'r' must come after a pivot",
        ),
        (
            lambda: [
                Step(name="p1", participant="x", kind=StepKind.PIVOT),
                Step(name="p2", participant="x", kind=StepKind.PIVOT),
            ],
            "second pivot 'p2'",
        ),
        (lambda: [], "steps"),
    ],
)
def test_malformed_sagas_fail_at_definition(steps, message):
    with pytest.raises(SagaDefinitionError, match=message):
        Saga(name="bad", input_model=In, steps=steps())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a", "participant": "p"}, "compensatable step 'a' needs a compensation"),
        (
            {"name": "a", "participant": "p", "kind": StepKind.PIVOT, "compensation": "u"},
            "pivot step 'a' cannot have a compensation",
        ),
        ({"name": "a", "participant": "p", "compensation": "u", "timeout_s": 0}, "timeout_s"),
        ({"name": "bad name", "participant": "p", "compensation": "u"}, "name"),
        ({"name": "a", "participant": "", "compensation": "u"}, "participant"),
        ({"name": "a", "participant": "p", "compensation": "u", "colour": 1}, "colour"),
    ],
)
def test_malformed_steps_fail_at_definition(kwargs, message):
    with pytest.raises(SagaDefinitionError, match=message):
        Step(**kwargs)


def test_saga_input_model_must_be_a_model():
    with pytest.raises(SagaDefinitionError, match="input_model"):
        Saga(name="s", input_model=dict, steps=[comp("a")])


def test_backoff_grows_exponentially_and_is_capped():
    policy = RetryPolicy(initial_backoff_s=0.1, backoff_multiplier=2, max_backoff_s=0.5, jitter=0)
    assert [policy.backoff_s(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_stays_within_its_band_and_under_the_cap():
    policy = RetryPolicy(initial_backoff_s=1, max_backoff_s=1.1, jitter=0.5)
    rng = random.Random(7)
    waits = [policy.backoff_s(1, rng) for _ in range(500)]
    assert min(waits) >= 0.5 and max(waits) <= 1.1
    assert len({round(w, 6) for w in waits}) > 100  # it really varies


def test_non_retryable_types_and_flags():
    policy = RetryPolicy(non_retryable=("CardDeclined",))
    assert not policy.is_retryable("CardDeclined")
    assert policy.is_retryable("ConnectionError")
    assert not policy.is_retryable("ConnectionError", retryable_flag=False)


def test_retry_policy_rejects_inverted_bounds():
    with pytest.raises(SagaDefinitionError, match="max_backoff_s"):
        RetryPolicy(initial_backoff_s=2, max_backoff_s=1)


def test_an_output_that_would_overwrite_the_input_or_an_earlier_output_is_refused():
    class Out(BaseModel):
        y: int

    class Clash(BaseModel):
        x: int

    Saga(name="fine", input_model=In, steps=[comp("a", output_model=Out)])
    with pytest.raises(SagaDefinitionError, match="step 'a' outputs 'x', which the input"):
        Saga(name="bad", input_model=In, steps=[comp("a", output_model=Clash)])
    with pytest.raises(SagaDefinitionError, match="step 'b' outputs 'y', which step 'a'"):
        Saga(name="bad", input_model=In, steps=[comp("a", output_model=Out),
                                                comp("b", output_model=Out)])


def test_a_step_may_name_its_action_and_compensation_by_reference():
    from participants.payment import Payment

    step = Step(action=Payment.process_payment, compensation=Payment.refund_payment)
    assert (step.name, step.participant, step.action, step.compensation) == (
        "process_payment", "payment", "process_payment", "refund_payment")
    named = Step(name="charge", participant="payment", action=Payment.process_payment,
                 compensation="refund_payment")
    assert named.name == "charge" and named.action == "process_payment"
    with pytest.raises(SagaDefinitionError, match="is not marked @compensation"):
        Step(action=Payment.process_payment, compensation=Payment.capture_payment)
    with pytest.raises(SagaDefinitionError, match="belong to participant 'payment', not 'bank'"):
        Step(participant="bank", action=Payment.process_payment,
             compensation=Payment.refund_payment)
    with pytest.raises(SagaDefinitionError, match="is not marked @action"):
        Step(action=Payment.balance, compensation=Payment.refund_payment)
