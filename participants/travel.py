"""Travel services for the trip examples: an airline, a hotel and a car rental."""

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

    @compensation("issue_tickets")
    def void_tickets(self, ctx: StepContext) -> dict:
        ctx.db.execute(
            "UPDATE bookings SET status='voided' WHERE booking_id=?",
            (ctx.data["flight_booking"],),
        )
        return {}


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


class CarRental(Participant):
    """Holds cars and releases them."""

    name = "car_rental"

    def setup(self, db: Any) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS cars (booking_id TEXT PRIMARY KEY, saga_id TEXT, "
            "days INTEGER, status TEXT NOT NULL)"
        )

    @action
    def book_car(self, ctx: StepContext) -> dict:
        booking_id = f"car-{uuid.uuid4().hex[:10]}"
        ctx.db.execute("INSERT INTO cars VALUES (?, ?, ?, 'held')",
                       (booking_id, ctx.saga_id, ctx.data["nights"] + 1))
        return {"car_booking": booking_id}

    @compensation("book_car")
    def cancel_car(self, ctx: StepContext) -> dict:
        ctx.db.execute("UPDATE cars SET status='cancelled' WHERE booking_id=?",
                       (ctx.action_output["car_booking"],))
        return {}
