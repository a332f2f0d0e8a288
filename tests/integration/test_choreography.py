"""Choreographed sagas on real Ray actors, judged from the participants' own stores: the
seed's example forward and compensating, a poison event that parks only its saga, bad
publishes that change nothing, a stalled payment that times out and never lands, a bus
killed mid-flight, and what `saga-actors show` says about a choreographed saga."""

from __future__ import annotations

import json

import pytest
import ray
from click.testing import CliRunner
from ray.util.state import list_tasks

from examples.order_choreography import (
    ORDER_CHOREOGRAPHY,
    InventoryReserved,
    OrderCreated,
    sample_input,
)
from participants.inventory import Inventory
from participants.payment import Payment
from participants.shipping import Shipping
from saga_actors import (
    Choreography,
    InvalidSagaIdError,
    Reaction,
    SagaInputError,
    SagaStatus,
    UnknownEventError,
)
from saga_actors.constants import bus_actor_name, shard_of
from saga_actors.ops.cli import main
from saga_actors.testing import Fault
from tests.conftest import poll, state_address
from tests.integration.test_bad_input import journal_rows

pytestmark = pytest.mark.ray

FORWARD = ["inventory.reserve_inventory", "payment.process_payment", "shipping.create_shipment"]


def applied(actors, saga_id) -> list[str]:
    return sorted(f"{n}.{e['method']}" for n, a in actors.items()
                  for e in ray.get(a.ledger.remote(saga_id)))


def show(rt, saga_id: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--address", ray.get_runtime_context().gcs_address,
                                       "--namespace", rt.config.namespace, "show", saga_id,
                                       *args])
    assert result.exit_code == 0, result.output
    return result.output


def step_outcomes(rt, saga_id: str) -> dict[tuple[str, str], str]:
    """What `show --json` says of each step, after checking that `journal show --json`
    says the same, every step ended with its time."""
    live = json.loads(show(rt, saga_id, "--json"))["steps"]
    offline = CliRunner().invoke(main, ["journal", "--journal", rt.config.journal, "show",
                                        saga_id, "--json"])
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.output)["steps"] == live
    assert all(s["ended_at"] and s["duration_s"] >= 0 for s in live), live
    return {(s["step"], s["phase"]): s["outcome"] for s in live}


# reserve only, and no failure event declared: an unknown sku is a poison event
RESERVE_ONLY = Choreography(
    name="reserve_only", events=(OrderCreated, InventoryReserved), start="OrderCreated",
    reactions=(Reaction(on="OrderCreated", participant="inventory",
                        handler="reserve_inventory", publishes="InventoryReserved"),),
    completes_on=("InventoryReserved",))


def test_orders_complete_or_compensate_and_a_poison_event_parks_only_its_saga(make_harness):
    h = make_harness()
    rt = h.runtime
    actors = h.deploy_many((Inventory, Payment, Shipping))
    rt.register(ORDER_CHOREOGRAPHY)
    rt.register(RESERVE_ONLY)
    before = ray.get(actors["inventory"].stock_levels.remote())
    # bad publishes: a specific error each, and nothing enters the log
    rt.publish(ORDER_CHOREOGRAPHY, "OrderCreated", sample_input(0), saga_id="first")
    rt.wait("first", timeout_s=60)
    rows = journal_rows(h)
    for call, error, message in [
        (lambda: rt.publish("order_choreography", "OrderShipped", sample_input(1),
                            saga_id="x"), UnknownEventError, "'OrderShipped'.*not declared"),
        (lambda: rt.publish("order_choreography", "PaymentProcessed", sample_input(1),
                            saga_id="x"), UnknownEventError,
         "does not enter a running saga from outside"),
        (lambda: rt.publish("order_choreography", "OrderCreated", {"order_id": "o"},
                            saga_id="x"), SagaInputError, "customer_id"),
        (lambda: rt.publish("order_choreography", "OrderCreated", sample_input(1),
                            saga_id=""), InvalidSagaIdError, "saga_id ''"),
        (lambda: rt.start("order_choreography", sample_input(1), placement="hosted"),
         Exception, "unknown placement 'hosted' \\(known: choreography\\)"),
    ]:
        with pytest.raises(error, match=message):
            call()
    assert journal_rows(h) == rows

    declined = {**sample_input(2), "customer_id": "declined"}
    ids = {"ok1": sample_input(3), "ok2": sample_input(4), "declined": declined}
    for saga_id, order in ids.items():
        rt.publish("order_choreography", "OrderCreated", order, saga_id=saga_id)
    poison = rt.start("reserve_only", {**sample_input(5), "items": [{"sku": "NOPE", "qty": 1}]})
    fine = rt.start("reserve_only", sample_input(6))
    records = {r.saga_id: r for r in rt.wait_all([*ids, poison, fine], timeout_s=90)}

    for saga_id in ("ok1", "ok2"):
        rec = records[saga_id]
        assert rec.status is SagaStatus.COMPLETED and rec.compensated == []
        assert [e.type for e in rec.events] == ["OrderCreated", "InventoryReserved",
                                                "PaymentProcessed", "ShipmentCreated"]
        assert applied(actors, saga_id) == FORWARD
    rec = records["declined"]
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["reserve_inventory"]
    assert [e.type for e in rec.events][-2:] == ["PaymentFailed", "InventoryReleased"]
    assert applied(actors, "declined") == ["inventory.release_inventory",
                                           "inventory.reserve_inventory"]
    # the poison event parked its own saga, and only it
    assert records[poison].status is SagaStatus.STUCK and "unknown sku" in records[poison].error
    assert records[fine].status is SagaStatus.COMPLETED
    assert rt.retry(poison) == "PENDING"  # delivered again (and refused again)
    assert rt.wait(poison, timeout_s=60).status is SagaStatus.STUCK
    sent = [t for t in rt.history(poison) if t.event == "action_sent"]
    assert len(sent) == 2
    after = ray.get(actors["inventory"].stock_levels.remote())
    reserved = {"WIDGET": 0, "GADGET": 0}
    for order in (sample_input(0), sample_input(3), sample_input(4), sample_input(6)):
        for item in order["items"]:
            reserved[item["sku"]] += item["qty"]
    assert after == {**before, **{k: before[k] - v for k, v in reserved.items()}}

    # show: the event chain, who produced and consumed each event, the bus that runs it
    text = show(rt, "ok1")
    for word in ("events", "OrderCreated", "InventoryReserved", "PaymentProcessed",
                 "ShipmentCreated", "payment.process_payment", "shipping.create_shipment",
                 bus_actor_name(shard_of("ok1", rt.config.hosts))):
        assert word in text, (word, text)
    poll(lambda: ray.get(rt.registry.counts.remote())["STUCK"] == 1,
         what="the registry to count the parked saga")
    # every step of a finished choreography is closed, as an orchestrated saga's are
    assert step_outcomes(rt, "ok1") == {
        ("reserve_inventory", "action"): "succeeded",
        ("process_payment", "action"): "succeeded",
        ("create_shipment", "action"): "succeeded"}
    assert step_outcomes(rt, "declined") == {
        ("reserve_inventory", "action"): "succeeded",
        ("process_payment", "action"): "failed",
        ("reserve_inventory", "compensation"): "compensated"}
    assert "in flight" not in show(rt, "ok1")


def test_a_stalled_payment_times_out_compensates_and_a_killed_bus_loses_nothing(make_harness):
    h = make_harness()
    rt = h.runtime
    actors = h.deploy_many((Inventory, Payment, Shipping),
                           payment={"process_payment": Fault(delay_s=60, times=1)})
    quick = tuple(r.model_copy(update={"deadline_s": 2.0}) if r.name == "process_payment"
                  else r for r in ORDER_CHOREOGRAPHY.reactions)
    c = ORDER_CHOREOGRAPHY.model_copy(update={"name": "impatient", "reactions": quick})
    rt.register(c)
    stalled = rt.start("impatient", sample_input(1), saga_id="stalled")
    poll(lambda: rt.get(stalled).awaiting, what="the saga waiting for its payment")
    text = show(rt, stalled)
    assert "waiting   for PaymentProcessed from payment for" in text, text
    assert "next expected: ShipmentCreated" in text
    rec = rt.wait(stalled, timeout_s=60)
    assert rec.status is SagaStatus.FAILED, rec.error
    assert [e.type for e in rec.events][-2:] == ["PaymentTimedOut", "InventoryReleased"]
    # the late handler was fenced: its charge never lands, even once its wait is over
    assert applied(actors, stalled) == ["inventory.release_inventory",
                                        "inventory.reserve_inventory"]
    assert ray.get(actors["payment"].balance.remote())["charged_cents"] == 0

    # a bus killed while a saga's shipment is in flight: it resumes, each effect once
    ray.get(actors["shipping"].set_faults.remote({"create_shipment": Fault(delay_s=1.0)}))
    moving = rt.start("impatient", sample_input(2), saga_id="moving")
    poll(lambda: rt.get(moving).current_step == "create_shipment" and rt.get(moving).in_flight,
         what="the shipment in flight")
    bus = ray.get_actor(bus_actor_name(shard_of(moving, rt.config.hosts)), rt.config.namespace)
    ray.kill(bus, no_restart=False)
    rec = rt.wait(moving, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED
    assert applied(actors, moving) == FORWARD
    assert [e.type for e in rec.events] == ["OrderCreated", "InventoryReserved",
                                            "PaymentProcessed", "ShipmentCreated"]
    assert {e.saga_id for e in rec.events} == {moving} and rec.events[0].version == 1
    # each delivery is a Ray task named <saga_id>/<event>/<handler>: the dashboard's timeline
    name = f"{moving}/PaymentProcessed/create_shipment"
    poll(lambda: list_tasks(address=state_address(), filters=[("name", "=", name)],
                            raise_on_missing_output=False), what=f"task {name}")
