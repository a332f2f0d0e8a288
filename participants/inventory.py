"""Inventory service: real stock levels; reservations that can be released."""

from __future__ import annotations

import uuid
from typing import Any

from saga_actors import NonRetryableError, Participant, StepContext, action, compensation

DEFAULT_STOCK = {"WIDGET": 10_000, "GADGET": 10_000, "GIZMO": 10_000}


class Inventory(Participant):
    """Reserves items against stock; releasing puts them back."""

    name = "inventory"

    def __init__(self, *, stock: dict[str, int] | None = None, **kwargs) -> None:
        self._initial_stock = dict(DEFAULT_STOCK if stock is None else stock)
        super().__init__(**kwargs)

    def setup(self, db: Any) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS reservations (reservation_id TEXT PRIMARY KEY, "
            "saga_id TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL, "
            "released INTEGER NOT NULL DEFAULT 0)"
        )
        db.executemany("INSERT INTO stock VALUES (?, ?) ON CONFLICT DO NOTHING",
                       sorted(self._initial_stock.items()))

    @action
    def reserve_inventory(self, ctx: StepContext) -> dict:
        reservation_id = f"res-{uuid.uuid4().hex[:10]}"
        for item in ctx.data["items"]:
            row = ctx.db.execute("SELECT qty FROM stock WHERE sku=?", (item["sku"],)).fetchone()
            if row is None:
                raise NonRetryableError(f"unknown sku {item['sku']!r}")
            if row[0] < item["qty"]:
                raise NonRetryableError(f"out of stock: {item['sku']} has {row[0]}")
            ctx.db.execute("UPDATE stock SET qty = qty - ? WHERE sku=?", (item["qty"], item["sku"]))
            ctx.db.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, 0)",
                (f"{reservation_id}:{item['sku']}", ctx.saga_id, item["sku"], item["qty"]),
            )
        return {"reservation_id": reservation_id}

    @compensation("reserve_inventory")
    def release_inventory(self, ctx: StepContext) -> dict:
        prefix = ctx.action_output["reservation_id"] + ":%"
        rows = ctx.db.execute(
            "SELECT reservation_id, sku, qty FROM reservations "
            "WHERE reservation_id LIKE ? AND released=0",
            (prefix,),
        ).fetchall()
        for rid, sku, qty in rows:
            ctx.db.execute("UPDATE stock SET qty = qty + ? WHERE sku=?", (qty, sku))
            ctx.db.execute("UPDATE reservations SET released=1 WHERE reservation_id=?", (rid,))
        return {"released": len(rows)}

    def stock_levels(self) -> dict[str, int]:
        """Current stock by sku."""
        return dict(self.db.execute("SELECT sku, qty FROM stock ORDER BY sku").fetchall())
