"""The seed's example: order fulfillment across inventory, payment and shipping.

    reserve_inventory  -> release_inventory   (inventory)
    process_payment    -> refund_payment      (payment)
    create_shipment    -> cancel_shipment     (shipping)
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from participants.inventory import Inventory
from participants.payment import Payment
from participants.shipping import Shipping
from saga_actors import RetryPolicy, Saga, Step


class Item(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(gt=0)


class OrderInput(BaseModel):
    """One customer order."""

    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    items: list[Item] = Field(min_length=1)
    amount_cents: int = Field(gt=0)
    address: str = Field(min_length=1)


class ReservationOut(BaseModel):
    reservation_id: str


class ChargeOut(BaseModel):
    charge_id: str
    charged_cents: int


class ShipmentOut(BaseModel):
    shipment_id: str
    tracking: str


ORDER_FULFILLMENT = Saga(
    name="order_fulfillment",
    input_model=OrderInput,
    deadline_s=120,
    steps=[
        Step(
            name="reserve_inventory",
            participant="inventory",
            compensation="release_inventory",
            output_model=ReservationOut,
            timeout_s=10,
        ),
        Step(
            name="process_payment",
            participant="payment",
            compensation="refund_payment",
            output_model=ChargeOut,
            timeout_s=10,
            retry=RetryPolicy(max_attempts=4, initial_backoff_s=0.1),
        ),
        Step(
            name="create_shipment",
            participant="shipping",
            compensation="cancel_shipment",
            output_model=ShipmentOut,
            timeout_s=10,
        ),
    ],
)

PARTICIPANTS = (Inventory, Payment, Shipping)


def sample_input(n: int) -> dict:
    """The input of the n-th demo order."""
    return {
        "order_id": f"order-{n}",
        "customer_id": f"customer-{n % 7}",
        "items": [{"sku": "WIDGET", "qty": 1 + n % 3}, {"sku": "GADGET", "qty": 1}],
        "amount_cents": 1999 + 100 * (n % 5),
        "address": f"{n} Main Street",
    }
