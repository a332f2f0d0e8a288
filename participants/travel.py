"""Travel services for the trip-booking example: an airline and a hotel."""

from __future__ import annotations

import uuid
from typing import Any

from saga_actors import Participant, StepContext, action, compensation


class Airline(Participant):
    """Holds seats, releases them, and issues tickets once the trip is paid."""

    name = "airline"

    def setup(self, db: Any) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS bookings (booking_id TEXT PRIMARY KEY, saga_id TEXT, "
            "flight TEXT, status TEXT NOT NULL)"
        )

    @action
    def book_flight(self, ctx: StepContext) -> dict:
        booking_id = f"fl-{uuid.uuid4().hex[:10]}"
        ctx.db.execute(
            "INSERT INTO bookings VALUES (?, ?, ?, 'held')",
            (booking_id, ctx.saga_id, ctx.data["flight"]),
        )
        return {"flight_booking": booking_id}

    @compensation("book_flight")
    def cancel_flight(self, ctx: StepContext) -> dict:
        ctx.db.execute(
            "UPDATE bookings SET status='cancelled' WHERE booking_id=?",
            (ctx.action_output["flight_booking"],),
        )
        return {}

    @action
    def issue_tickets(self, ctx: StepContext) -> dict:
        ctx.db.execute(
            "UPDATE bookings SET status='ticketed' WHERE booking_id=?",
            (ctx.data["flight_booking"],),
        )
        return {"ticket": f"TKT-{ctx.data['flight_booking'][3:]}"}


class Hotel(Participant):
    """Holds rooms, releases them, and confirms them once the trip is paid."""

    name = "hotel"

    def setup(self, db: Any) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS rooms (booking_id TEXT PRIMARY KEY, saga_id TEXT, "
            "hotel TEXT, nights INTEGER, status TEXT NOT NULL)"
        )

    @action
    def book_hotel(self, ctx: StepContext) -> dict:
        booking_id = f"ht-{uuid.uuid4().hex[:10]}"
        ctx.db.execute(
            "INSERT INTO rooms VALUES (?, ?, ?, ?, 'held')",
            (booking_id, ctx.saga_id, ctx.data["hotel"], ctx.data["nights"]),
        )
        return {"hotel_booking": booking_id}

    @compensation("book_hotel")
    def cancel_hotel(self, ctx: StepContext) -> dict:
        ctx.db.execute(
            "UPDATE rooms SET status='cancelled' WHERE booking_id=?",
            (ctx.action_output["hotel_booking"],),
        )
        return {}

    @action
    def confirm_hotel(self, ctx: StepContext) -> dict:
        ctx.db.execute(
            "UPDATE rooms SET status='confirmed' WHERE booking_id=?", (ctx.data["hotel_booking"],)
        )
        return {"hotel_confirmed": True}
