"""Shipping service: shipments that can be cancelled before they leave."""

from __future__ import annotations

import uuid
from typing import Any

from saga_actors import Participant, StepContext, action, compensation


class Shipping(Participant):
    """Creates and cancels shipments."""

    name = "shipping"

    def setup(self, db: Any) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS shipments (shipment_id TEXT PRIMARY KEY, "
            "saga_id TEXT, address TEXT, status TEXT NOT NULL)"
        )

    @action
    def create_shipment(self, ctx: StepContext) -> dict:
        shipment_id = f"sh-{uuid.uuid4().hex[:10]}"
        ctx.db.execute(
            "INSERT INTO shipments VALUES (?, ?, ?, 'created')",
            (shipment_id, ctx.saga_id, ctx.data["address"]),
        )
        return {"shipment_id": shipment_id, "tracking": f"TRK{shipment_id[3:].upper()}"}

    @compensation("create_shipment")
    def cancel_shipment(self, ctx: StepContext) -> dict:
        ctx.db.execute(
            "UPDATE shipments SET status='cancelled' WHERE shipment_id=?",
            (ctx.action_output["shipment_id"],),
        )
        return {"cancelled": ctx.action_output["shipment_id"]}

    def active_shipments(self) -> int:
        """Shipments not cancelled."""
        return self.db.execute(
            "SELECT COUNT(*) FROM shipments WHERE status='created'"
        ).fetchone()[0]
