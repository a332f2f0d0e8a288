"""Payment service: a ledger of charges and refunds, in integer cents."""

from __future__ import annotations

import uuid
from typing import Any

from saga_actors import NonRetryableError, Participant, StepContext, action, compensation

DECLINED_CUSTOMERS = frozenset({"declined"})


class Payment(Participant):
    """Charges customers, refunds charges; captures are final (a pivot)."""

    name = "payment"

    def setup(self, db: Any) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS charges (charge_id TEXT PRIMARY KEY, saga_id TEXT, "
            "customer TEXT, amount_cents INTEGER NOT NULL, final INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS refunds (refund_id TEXT PRIMARY KEY, "
            "charge_id TEXT UNIQUE NOT NULL, amount_cents INTEGER NOT NULL)"
        )

    def _charge(self, ctx: StepContext, *, final: bool) -> dict:
        customer, amount = ctx.data["customer_id"], ctx.data["amount_cents"]
        if customer in DECLINED_CUSTOMERS:
            raise NonRetryableError(f"card declined for customer {customer!r}")
        charge_id = f"ch-{uuid.uuid4().hex[:10]}"
        ctx.db.execute(
            "INSERT INTO charges VALUES (?, ?, ?, ?, ?)",
            (charge_id, ctx.saga_id, customer, amount, int(final)),
        )
        return {"charge_id": charge_id, "charged_cents": amount}

    @action
    def process_payment(self, ctx: StepContext) -> dict:
        return self._charge(ctx, final=False)

    @compensation("process_payment")
    def refund_payment(self, ctx: StepContext) -> dict:
        charge_id = ctx.action_output["charge_id"]
        amount = ctx.db.execute(
            "SELECT amount_cents FROM charges WHERE charge_id=?", (charge_id,)
        ).fetchone()[0]
        refund_id = f"rf-{uuid.uuid4().hex[:10]}"
        ctx.db.execute("INSERT INTO refunds VALUES (?, ?, ?)", (refund_id, charge_id, amount))
        return {"refund_id": refund_id, "refunded_cents": amount}

    @action
    def capture_payment(self, ctx: StepContext) -> dict:
        """A final, non-refundable capture: the pivot of the trip saga."""
        return self._charge(ctx, final=True)

    def balance(self) -> dict[str, int]:
        """Cents charged, refunded, and kept."""
        def total(table: str) -> int:
            sql = f"SELECT COALESCE(SUM(amount_cents), 0) FROM {table}"
            return self.db.execute(sql).fetchone()[0]

        charged, refunded = total("charges"), total("refunds")
        return {"charged_cents": charged, "refunded_cents": refunded,
                "net_cents": charged - refunded}
