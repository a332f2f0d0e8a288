"""An order as a choreography with parallel branches, a join, and an event from outside.

    OrderCreated -> inventory reserves      -> InventoryReserved  (or InventoryFailed)
                 -> payment authorizes      -> PaymentAuthorized  (or PaymentFailed)
                    (side by side: a fan-out)
    the payment provider's webhook          -> PaymentCaptured    (from outside, found by
                                                                   its order_id)
    InventoryReserved + PaymentAuthorized + PaymentCaptured (a join)
                 -> shipping ships          -> ShipmentCreated    (COMPLETED)
                                               (or ShipmentFailed; no capture within the
                                               window: PaymentNotCaptured)

Whatever fails, what had completed is undone, newest first: the inventory released
(InventoryReleased), the authorization refunded (PaymentRefunded). The same inventory,
payment and shipping participants as the other order examples, with their real stores.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from examples.order_choreography import (  # the events the chained order has too
    Failure,
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    OrderCreated,
)
from examples.order_fulfillment import sample_input
from participants.inventory import Inventory
from participants.payment import Payment
from participants.shipping import Shipping
from saga_actors import Choreography, Reaction, RetryPolicy


class PaymentAuthorized(OrderCreated):
    charge_id: str
    charged_cents: int


class PaymentCaptured(BaseModel):
    """The payment provider's webhook: the money is captured. It comes from outside the
    system and finds its saga by the order id it carries."""

    external: ClassVar[bool] = True
    correlate_by: ClassVar[str] = "order_id"

    order_id: str = Field(min_length=1)
    capture_id: str = Field(min_length=1)
    captured_cents: int = Field(gt=0)


class ShipmentCreated(OrderCreated):
    shipment_id: str
    tracking: str


class PaymentFailed(OrderCreated):
    failure: Failure


class ShipmentFailed(OrderCreated):
    failure: Failure


class PaymentNotCaptured(OrderCreated):
    failure: Failure


class PaymentRefunded(OrderCreated):
    refund_id: str


PAYMENT_RETRY = RetryPolicy(max_attempts=4, initial_backoff_s=0.1)
CAPTURE_WINDOW_S = 900.0  # the provider captures within 15 minutes of the order


def _release(on: str) -> Reaction:
    return Reaction(name=f"release_after_{on}", on=on, participant="inventory",
                    handler="release_inventory", compensates="reserve_inventory",
                    publishes="InventoryReleased")


def _refund(on: str) -> Reaction:
    return Reaction(name=f"refund_after_{on}", on=on, participant="payment",
                    handler="refund_payment", compensates="authorize_payment",
                    publishes="PaymentRefunded")


def order_choreography_parallel(capture_window_s: float = CAPTURE_WINDOW_S) -> Choreography:
    """The choreography, with the window the payment capture must come in."""
    return Choreography(
        name="order_choreography_parallel",
        events=(OrderCreated, InventoryReserved, PaymentAuthorized, PaymentCaptured,
                ShipmentCreated, InventoryFailed, PaymentFailed, ShipmentFailed,
                PaymentNotCaptured, InventoryReleased, PaymentRefunded),
        start="OrderCreated",
        reactions=(
            # a fan-out: both react to OrderCreated, side by side
            Reaction(on="OrderCreated", participant="inventory", handler="reserve_inventory",
                     publishes="InventoryReserved", failure="InventoryFailed"),
            Reaction(name="authorize_payment", on="OrderCreated", participant="payment",
                     handler="process_payment", publishes="PaymentAuthorized",
                     failure="PaymentFailed", retry=PAYMENT_RETRY),
            # a join: once all three came; its deadline counts from the first of them
            Reaction(on_all=("InventoryReserved", "PaymentAuthorized", "PaymentCaptured"),
                     participant="shipping", handler="create_shipment",
                     publishes="ShipmentCreated", failure="ShipmentFailed",
                     deadline_s=capture_window_s, timeout_event="PaymentNotCaptured"),
            # compensations: what each failure undoes, if it had completed
            _refund("InventoryFailed"),
            _release("PaymentFailed"),
            _release("ShipmentFailed"), _refund("ShipmentFailed"),
            _release("PaymentNotCaptured"), _refund("PaymentNotCaptured"),
        ),
        completes_on=("ShipmentCreated",),
        fails_on=("InventoryReleased", "PaymentRefunded"))


ORDER_CHOREOGRAPHY_PARALLEL = order_choreography_parallel()
PARTICIPANTS = (Inventory, Payment, Shipping)


def capture(n: int) -> dict:
    """The webhook's payload for the n-th sample order."""
    order = sample_input(n)
    return {"order_id": order["order_id"], "capture_id": f"cap-{order['order_id']}",
            "captured_cents": order["amount_cents"]}


EXTERNAL = {"PaymentCaptured": capture}  # what a webhook sends, per sample order
with_window = order_choreography_parallel  # (the launcher's --confirm-within)

__all__ = ["EXTERNAL", "ORDER_CHOREOGRAPHY_PARALLEL", "PARTICIPANTS",
           "order_choreography_parallel", "sample_input"]
