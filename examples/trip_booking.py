"""Trip booking: a saga with a pivot.

    book_flight    -> cancel_flight   compensatable   (airline)
    book_hotel     -> cancel_hotel    compensatable   (hotel)
    capture_payment                   PIVOT           (payment; final, no refund)
    issue_tickets                     retriable       (airline)
    confirm_hotel                     retriable       (hotel)

Before the capture, any failure cancels the holds. Once the card is captured the trip can
only go forward: ticketing and the hotel confirmation are retried until they succeed.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from participants.payment import Payment
from participants.travel import Airline, Hotel
from saga_actors import RetryPolicy, Saga, Step, StepKind


class TripInput(BaseModel):
    """One trip to book."""

    trip_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    flight: str = Field(min_length=1)
    hotel: str = Field(min_length=1)
    nights: int = Field(gt=0)
    amount_cents: int = Field(gt=0)


FOREVER = RetryPolicy(max_attempts=1, initial_backoff_s=0.1, max_backoff_s=2.0)

TRIP_BOOKING = Saga(
    name="trip_booking",
    input_model=TripInput,
    deadline_s=120,
    steps=[
        Step(name="book_flight", participant="airline", compensation="cancel_flight"),
        Step(name="book_hotel", participant="hotel", compensation="cancel_hotel"),
        Step(name="capture_payment", participant="payment", kind=StepKind.PIVOT),
        Step(name="issue_tickets", participant="airline", kind=StepKind.RETRIABLE, retry=FOREVER),
        Step(name="confirm_hotel", participant="hotel", kind=StepKind.RETRIABLE, retry=FOREVER),
    ],
)

PARTICIPANTS = (Airline, Hotel, Payment)


def sample_input(n: int) -> dict:
    """The input of the n-th demo trip."""
    return {
        "trip_id": f"trip-{n}",
        "customer_id": f"traveller-{n % 5}",
        "flight": f"LH{400 + n % 50}",
        "hotel": "Hotel Adlon",
        "nights": 1 + n % 4,
        "amount_cents": 45_000 + 500 * (n % 7),
    }
