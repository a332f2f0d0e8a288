"""The test kit on a saga with a parallel group, a wait for a signal and a child saga.

No Ray: `pytest examples/test_business_trip.py` runs it in well under a second.
"""

from __future__ import annotations

from examples.business_trip import (
    BUSINESS_TRIP,
    CHILDREN,
    PARTICIPANTS,
    approval,
    sample_input,
)
from saga_actors import SagaStatus
from saga_actors.testing import SagaTestKit

BOOKINGS = {"book_flight", "book_hotel", "book_car"}


def kit() -> SagaTestKit:
    return SagaTestKit(BUSINESS_TRIP, PARTICIPANTS, children=CHILDREN)


def test_an_approved_trip_books_in_parallel_and_its_child_issues_the_ticket():
    k = kit()
    rec = k.run(sample_input(1), "trip-1", signals={"approval": approval(1)})
    assert rec.status is SagaStatus.COMPLETED
    assert set(rec.completed[:3]) == BOOKINGS  # in the order they completed
    assert rec.data["approved_by"] == "manager-1" and rec.data["ticket"].startswith("TKT-")
    assert k.journal.load("trip-1/issue_eticket").status is SagaStatus.COMPLETED
    assert k.effects("airline") == {"book_flight": 1, "issue_tickets": 1}
    assert k.effects("notifier") == {"send_email": 1}


def test_without_an_approval_the_wait_times_out_and_every_booking_is_cancelled():
    k = kit()
    rec = k.run(sample_input(2))  # no signal: the fake clock skips the 20 s at once
    assert rec.status is SagaStatus.FAILED and "no 'approval' signal" in rec.error
    assert set(rec.compensated) == BOOKINGS
    assert k.effects("car_rental") == {"book_car": 1, "cancel_car": 1}
    assert k.effects("payment") == {}


def test_a_crash_mid_group_and_one_in_the_child_apply_each_effect_once():
    k = kit()
    k.inject("book_car", crash="replied")
    k.inject("email_eticket", crash="sent")
    rec = k.run(sample_input(3), "trip-3", signals={"approval": approval(3)})
    assert rec.status is SagaStatus.COMPLETED and k.crashes == 2
    assert k.effects("car_rental") == {"book_car": 1}
    assert k.effects("notifier") == {"send_email": 1}
