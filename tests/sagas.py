"""Small saga definitions shared by the Ray-free tests (instance, supervisor, host)."""

from __future__ import annotations

from pydantic import BaseModel

from saga_actors import RetryPolicy, Saga, Step, StepKind


class Order(BaseModel):
    order_id: str
    amount: int


class Charge(BaseModel):
    charge_id: str


FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=1, jitter=0)

ORDER = Saga(
    name="order",
    input_model=Order,
    steps=[
        Step(name="reserve", participant="inv", compensation="release", retry=FAST,
             compensation_retry=FAST),
        Step(name="pay", participant="pay", compensation="refund", retry=FAST,
             compensation_retry=FAST),
        Step(name="ship", participant="ship", compensation="unship", retry=FAST,
             compensation_retry=FAST),
    ],
)

TRIP = Saga(
    name="trip",
    input_model=Order,
    steps=[
        Step(name="hold", participant="a", compensation="unhold", retry=FAST),
        Step(name="capture", participant="p", kind=StepKind.PIVOT, retry=FAST),
        Step(name="ticket", participant="a", kind=StepKind.RETRIABLE, retry=FAST),
    ],
)
