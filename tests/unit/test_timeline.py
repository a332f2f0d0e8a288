"""The timeline picture: drawn from the journal's record and history, a lane per step
with the marks of what happened on it (no Ray)."""

from __future__ import annotations

from collections import Counter

from examples.trip_booking import PARTICIPANTS, TRIP_BOOKING, sample_input
from saga_actors import SagaStatus
from saga_actors.ops.timeline import render_svg
from saga_actors.services.registry import describe
from saga_actors.testing import SagaTestKit
from tests.conftest import timeline_lanes_and_marks


def picture(kit: SagaTestKit, saga_id: str) -> tuple[list[str], Counter]:
    """The lanes of the saga's SVG, and its marks by (class, lane)."""
    info = describe(kit.journal.load(saga_id), kit.history(saga_id), hosts=1)
    return timeline_lanes_and_marks(render_svg(info))


def test_a_saga_that_retried_timed_out_and_compensated_has_a_lane_per_step_with_its_marks():
    kit = SagaTestKit(TRIP_BOOKING, PARTICIPANTS)
    kit.inject("book_flight", fail=True, retryable=True, attempt=1)
    kit.inject("book_hotel", timeout=True, attempt=1)
    kit.inject("capture_payment", fail=True)
    rec = kit.run(sample_input(1), saga_id="declined")
    assert rec.status is SagaStatus.FAILED

    lanes, marks = picture(kit, "declined")
    assert lanes == ["saga", "book_flight", "book_hotel", "capture_payment"]
    assert marks[("retry", "book_flight")] == 1
    assert marks[("timeout", "book_hotel")] == 1
    assert marks[("attempt", "book_flight")] == marks[("attempt", "book_hotel")] == 2
    assert marks[("failed", "capture_payment")] == 1
    # each compensated step: its compensation sent, then done (a bar)
    assert marks[("compensation", "book_flight")] == marks[("compensation", "book_hotel")] == 2
    assert marks[("compensation", "capture_payment")] == 0  # the pivot never applied
    assert marks[("status", "saga")] == 1 and marks[("pivot", "capture_payment")] == 0
    assert ">FAILED<" in render_svg(describe(kit.journal.load("declined"),
                                             kit.history("declined"), hosts=1))


def test_a_completed_saga_marks_its_pivot_and_every_step_succeeded():
    kit = SagaTestKit(TRIP_BOOKING, PARTICIPANTS)
    assert kit.run(sample_input(2), saga_id="booked").status is SagaStatus.COMPLETED
    lanes, marks = picture(kit, "booked")
    steps = [s.name for s in TRIP_BOOKING.steps]
    assert lanes == ["saga", *steps]
    assert all(marks[("succeeded", s)] == 1 for s in steps)
    assert marks[("pivot", "capture_payment")] == 1
    assert not any(kind in ("retry", "timeout", "failed", "compensation")
                   for kind, _ in marks)


def test_a_choreography_draws_its_branches_side_by_side_and_marks_its_join():
    from examples.order_choreography_parallel import ORDER_CHOREOGRAPHY_PARALLEL, capture
    from examples.order_choreography_parallel import PARTICIPANTS as ORDER_PARTICIPANTS
    from examples.order_fulfillment import sample_input as order

    kit = SagaTestKit(ORDER_CHOREOGRAPHY_PARALLEL, ORDER_PARTICIPANTS)
    rec = kit.run(order(1), "p1", events=[("PaymentCaptured", capture(1))])
    assert rec.status is SagaStatus.COMPLETED
    svg = render_svg(describe(rec, kit.history("p1"), hosts=1))
    lanes, marks = timeline_lanes_and_marks(svg)
    assert {"start", "external", "inventory", "payment", "shipping"} <= set(lanes)
    # OrderCreated leaves the start for both branches at once, each on its own lane
    assert marks[("fanout", "start")] == 2
    # the join: where InventoryReserved, PaymentAuthorized and PaymentCaptured meet
    assert marks[("join", "shipping")] == 1
    assert "join of InventoryReserved, PaymentAuthorized, PaymentCaptured" in svg
