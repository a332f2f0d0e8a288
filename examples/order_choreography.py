"""The seed's example as a choreography: no coordinator; each service reacts to an event.

    OrderCreated      -> inventory reserves   -> InventoryReserved  (or InventoryFailed)
    InventoryReserved -> payment charges      -> PaymentProcessed   (or PaymentFailed,
                                                                      PaymentTimedOut)
    PaymentProcessed  -> shipping ships       -> ShipmentCreated    (COMPLETED)
                                                  (or ShipmentFailed, ShipmentTimedOut)
    PaymentFailed / PaymentTimedOut   -> inventory releases -> InventoryReleased (FAILED)
    ShipmentFailed / ShipmentTimedOut -> payment refunds    -> PaymentRefunded
    PaymentRefunded                   -> inventory releases -> InventoryReleased (FAILED)

The same inventory, payment and shipping participants as the orchestrated example, with
their real stores: the handlers are the same methods.
"""

from __future__ import annotations

from pydantic import BaseModel

from examples.order_fulfillment import OrderInput, sample_input
from participants.inventory import Inventory
from participants.payment import Payment
from participants.shipping import Shipping
from saga_actors import Choreography, Reaction, RetryPolicy


class OrderCreated(OrderInput):
    """A customer placed an order: the saga's input."""


class InventoryReserved(OrderCreated):
    reservation_id: str


class PaymentProcessed(InventoryReserved):
    charge_id: str
    charged_cents: int


class ShipmentCreated(PaymentProcessed):
    shipment_id: str
    tracking: str


class Failure(BaseModel):
    step: str
    error: str


class InventoryFailed(OrderCreated):
    failure: Failure


class PaymentFailed(InventoryReserved):
    failure: Failure


class PaymentTimedOut(InventoryReserved):
    failure: Failure


class ShipmentFailed(PaymentProcessed):
    failure: Failure


class ShipmentTimedOut(PaymentProcessed):
    failure: Failure


class PaymentRefunded(PaymentProcessed):
    refund_id: str


class InventoryReleased(OrderCreated):
    released: int


PAYMENT_RETRY = RetryPolicy(max_attempts=4, initial_backoff_s=0.1)
HANDLER_DEADLINE_S = 60.0  # the event a payment or a shipment leads to comes within this

ORDER_CHOREOGRAPHY = Choreography(
    name="order_choreography",
    events=(OrderCreated, InventoryReserved, PaymentProcessed, ShipmentCreated,
            InventoryFailed, PaymentFailed, PaymentTimedOut, ShipmentFailed, ShipmentTimedOut,
            PaymentRefunded, InventoryReleased),
    start="OrderCreated",
    deadline_s=120,
    reactions=(
        Reaction(on="OrderCreated", participant="inventory", handler="reserve_inventory",
                 publishes="InventoryReserved", failure="InventoryFailed"),
        Reaction(on="InventoryReserved", participant="payment", handler="process_payment",
                 publishes="PaymentProcessed", failure="PaymentFailed", retry=PAYMENT_RETRY,
                 deadline_s=HANDLER_DEADLINE_S, timeout_event="PaymentTimedOut"),
        Reaction(on="PaymentProcessed", participant="shipping", handler="create_shipment",
                 publishes="ShipmentCreated", failure="ShipmentFailed",
                 deadline_s=HANDLER_DEADLINE_S, timeout_event="ShipmentTimedOut"),
        # compensating reactions: each undoes an earlier reaction's effect
        Reaction(name="release_after_payment_failed", on="PaymentFailed",
                 participant="inventory", handler="release_inventory",
                 compensates="reserve_inventory", publishes="InventoryReleased"),
        Reaction(name="release_after_payment_timed_out", on="PaymentTimedOut",
                 participant="inventory", handler="release_inventory",
                 compensates="reserve_inventory", publishes="InventoryReleased"),
        Reaction(name="refund_after_shipment_failed", on="ShipmentFailed",
                 participant="payment", handler="refund_payment",
                 compensates="process_payment", publishes="PaymentRefunded"),
        Reaction(name="refund_after_shipment_timed_out", on="ShipmentTimedOut",
                 participant="payment", handler="refund_payment",
                 compensates="process_payment", publishes="PaymentRefunded"),
        Reaction(name="release_after_refund", on="PaymentRefunded", participant="inventory",
                 handler="release_inventory", compensates="reserve_inventory",
                 publishes="InventoryReleased"),
    ),
    completes_on=("ShipmentCreated",),
    fails_on=("InventoryReleased", "InventoryFailed"),
)

PARTICIPANTS = (Inventory, Payment, Shipping)

__all__ = ["ORDER_CHOREOGRAPHY", "PARTICIPANTS", "sample_input"]
