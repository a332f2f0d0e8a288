"""Business trip: parallel bookings, a manager's approval, and an e-ticket child saga.

    +- book_flight   -> cancel_flight  (airline)     \\
    |  book_hotel    -> cancel_hotel   (hotel)        > in parallel
    +- book_car      -> cancel_car     (car_rental)  /
       manager_approval                WAIT for the signal "approval" (up to 10 s)
       capture_payment                 PIVOT (payment; final)
       issue_eticket                   CHILD saga "eticket" (retriable):
                                         issue_tickets -> void_tickets   (airline)
                                         email_eticket -> retract_email  (notifier)

The three bookings run at once; if one fails, the others are stopped and everything held
is released. The trip then waits, durably, for a manager's approval: send it with
``rt.signal(saga_id, "approval", {"approved_by": "..."})`` or
``saga-actors signal SAGA_ID approval --data '{"approved_by": "..."}'``. Without it, the
wait times out and every booking is cancelled. Once approved and paid, the e-ticket is
issued by a child saga (id ``<trip id>/issue_eticket``), its output (the ticket) merged
into the trip's.

    python scripts/launch_sagas.py business_trip --count 3            # approved after 1 s
    python scripts/launch_sagas.py business_trip --no-approve         # times out: FAILED
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from examples.trip_booking import TripInput
from examples.trip_booking import sample_input as trip_input
from participants.notifier import Notifier
from participants.payment import Payment
from participants.travel import Airline, CarRental, Hotel
from saga_actors import Child, Parallel, Saga, Step, StepKind, Wait


class Approval(BaseModel):
    """The manager's approval (the signal's payload)."""

    approved_by: str = Field(min_length=1)


class ETicketInput(BaseModel):
    """What the e-ticket child saga takes from the trip."""

    trip_id: str
    customer_id: str
    flight_booking: str


APPROVAL_TIMEOUT_S = 10.0

ETICKET = Saga(
    name="eticket",
    input_model=ETicketInput,
    steps=[
        Step(name="issue_tickets", participant="airline", compensation="void_tickets"),
        Step(name="email_eticket", action="send_email", participant="notifier",
             compensation="retract_email"),
    ],
)

BUSINESS_TRIP = Saga(
    name="business_trip",
    input_model=TripInput,  # the trip_booking example's input
    deadline_s=120,
    steps=[
        Parallel(
            Step(name="book_flight", participant="airline", compensation="cancel_flight"),
            Step(name="book_hotel", participant="hotel", compensation="cancel_hotel"),
            Step(name="book_car", participant="car_rental", compensation="cancel_car"),
            name="bookings",
        ),
        Wait("manager_approval", signal="approval", payload=Approval,
             timeout_s=APPROVAL_TIMEOUT_S),
        Step(name="capture_payment", participant="payment", kind=StepKind.PIVOT),
        Child("issue_eticket", saga=ETICKET, kind=StepKind.RETRIABLE),
    ],
)

CHILDREN = (ETICKET,)
PARTICIPANTS = (Airline, Hotel, CarRental, Payment, Notifier)


def sample_input(n: int) -> dict:
    """The input of the n-th demo trip (trip_booking's, for an employee)."""
    return {**trip_input(n), "trip_id": f"btrip-{n}", "customer_id": f"employee-{n % 5}"}


def approval(n: int) -> dict:
    """The manager's approval of the n-th demo trip."""
    return {"approved_by": f"manager-{n % 2}"}


SIGNALS = {"approval": approval}  # what scripts/launch_sagas.py sends each demo trip
