"""The parallel order choreography on real Ray: branches side by side on the bus, a join,
and the payment provider's webhook from outside, through rt.publish and saga-actors
publish. Judged from the participants' own stores."""

from __future__ import annotations

import json
import sqlite3

import pytest
import ray
from click.testing import CliRunner

from examples.order_choreography_parallel import ORDER_CHOREOGRAPHY_PARALLEL, capture
from examples.order_fulfillment import sample_input
from participants.inventory import Inventory
from participants.payment import Payment
from participants.shipping import Shipping
from saga_actors import (
    EventPayloadError,
    SagaFinishedError,
    SagaStatus,
    UncorrelatedEventError,
    UnknownEventError,
)
from saga_actors.ops.cli import main
from saga_actors.testing import Fault
from tests.conftest import poll
from tests.integration.test_bad_input import journal_rows

pytestmark = pytest.mark.ray

NAME = ORDER_CHOREOGRAPHY_PARALLEL.name
FORWARD = ["inventory.reserve_inventory", "payment.process_payment", "shipping.create_shipment"]


def applied(actors, saga_id) -> list[str]:
    return sorted(f"{n}.{e['method']}" for n, a in actors.items()
                  for e in ray.get(a.ledger.remote(saga_id)))


def cli(rt, *args: str):
    return CliRunner().invoke(main, ["--address", ray.get_runtime_context().gcs_address,
                                     "--namespace", rt.config.namespace, *args])


def signals_kept(h) -> int:
    path = h.runtime.config.journal.split("://", 1)[1][1:]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM signals").fetchone()[0]
    finally:
        db.close()


def test_branches_a_join_and_the_webhook_on_ray(make_harness):
    h = make_harness()
    rt = h.runtime
    actors = h.deploy_many((Inventory, Payment, Shipping))
    rt.register(ORDER_CHOREOGRAPHY_PARALLEL)

    # a branch fails for good while the other's call is in flight: that call is stopped
    # and fenced, and nothing is left to undo (no reservation, no charge)
    h.deploy_many((Inventory, Payment, Shipping),
                  payment={"process_payment": Fault(delay_s=3)})
    money = ray.get(actors["payment"].balance.remote())
    bad_sku = {**sample_input(50), "items": [{"sku": "NOPE", "qty": 1}]}
    rt.publish(NAME, "OrderCreated", bad_sku, saga_id="stopped")
    rec = rt.wait("stopped", timeout_s=60)
    assert rec.status is SagaStatus.FAILED, rec.error
    assert [e.type for e in rec.events] == ["OrderCreated", "InventoryFailed"]
    assert applied(actors, "stopped") == []
    assert ray.get(actors["payment"].balance.remote()) == money
    h.deploy_many((Inventory, Payment, Shipping))  # faults off

    # the webhook comes before the saga is ready for it: it waits in the log
    rt.publish(NAME, "OrderCreated", sample_input(51), saga_id="early")
    assert rt.publish(NAME, "PaymentCaptured", capture(51), event_id="hook-51") == "early"
    # the webhook comes while the saga waits for it; the provider sends it three times
    rt.publish(NAME, "OrderCreated", sample_input(52), saga_id="waits")
    poll(lambda: [x.waits_for for x in rt.get("waits").expects] == [["PaymentCaptured"]],
         what="the saga waiting for its capture")
    text = cli(rt, "show", "waits").output
    assert "join 'create_shipment' has InventoryReserved, PaymentAuthorized, waits for " \
           "PaymentCaptured (external, correlated by order_id=order-52) for" in text, text
    assert "of 15 min" in text
    rows = journal_rows(h)
    for _ in range(2):
        assert rt.publish(NAME, "PaymentCaptured", capture(52), event_id="hook-52") == "waits"
    said = cli(rt, "publish", NAME, "PaymentCaptured", "--data", json.dumps(capture(52)),
               "--id", "hook-52")
    assert said.exit_code == 0 and "was sent before" in said.output, said.output
    records = {r.saga_id: r for r in rt.wait_all(["early", "waits"], timeout_s=60)}
    for saga_id, rec in records.items():
        assert rec.status is SagaStatus.COMPLETED, rec.error
        assert applied(actors, saga_id) == FORWARD  # each effect once
        outside = [e for e in rec.events if e.producer == "external"]
        assert [e.external_id for e in outside] == [f"hook-{51 if saga_id == 'early' else 52}"]
    early = [e.type for e in records["early"].events]  # (taken when the bus first looked)
    assert early.index("PaymentCaptured") < early.index("ShipmentCreated")
    assert journal_rows(h)[0] != rows[0]  # (the saga went on)

    # after the saga finished: refused, nothing journaled, counted
    kept, rows = signals_kept(h), journal_rows(h)
    errors = [
        (lambda: rt.publish(NAME, "PaymentCaptured", capture(52), event_id="late"),
         SagaFinishedError, "waits is COMPLETED: it takes no more events"),
        (lambda: rt.publish(NAME, "PaymentCaptured", capture(999)), UncorrelatedEventError,
         "no saga has order_id='order-999'"),
        (lambda: rt.publish(NAME, "PaymentCaptured", {**capture(52), "captured_cents": -1},
                            saga_id="waits"), SagaFinishedError, "takes no more events"),
        (lambda: rt.publish(NAME, "ShipmentCreated", {}, saga_id="waits"), UnknownEventError,
         "does not enter a running saga from outside"),
        (lambda: rt.publish(NAME, "PaymentCaptured", {"capture_id": "c"}),
         EventPayloadError, "'order_id' is missing"),
    ]
    for send, error, message in errors:
        with pytest.raises(error, match=message):
            send()
    said = cli(rt, "publish", NAME, "PaymentCaptured", "--data", json.dumps(capture(52)))
    assert said.exit_code == 1 and "takes no more events" in said.output
    assert signals_kept(h) == kept and journal_rows(h) == rows

    # the registry counts what came from outside, by fate
    poll(lambda: ray.get(rt.registry.outside_events.remote()).get(NAME, {}) == {
        "external_taken": 2, "duplicate_dropped": 2, "refused_finished": 3},
        what="the registry's counts of events from outside")
