"""The runtime on a real Ray instance with real SQLite files."""

from __future__ import annotations

import pytest
import ray

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import (
    RetryPolicy,
    Saga,
    SagaConflictError,
    SagaStatus,
    Step,
)
from saga_actors.testing import Fault
from tests.conftest import poll

pytestmark = pytest.mark.ray


def deploy_order(harness, **faults):
    """The order's participants (started once per module), each with exactly ``faults``."""
    harness.runtime.register(ORDER_FULFILLMENT)
    return harness.deploy_many(PARTICIPANTS, **{p.name: faults.get(p.name, {})
                                                for p in PARTICIPANTS})


def effects(actors, saga_id):
    return sorted(
        f"{name}.{e['method']}" for name, a in actors.items()
        for e in ray.get(a.ledger.remote(saga_id))
    )


def test_order_saga_completes_with_each_effect_once(shared):
    actors = deploy_order(shared)
    before = ray.get(actors["inventory"].stock_levels.remote())
    rt = shared.runtime
    saga_id = shared.start("order_fulfillment", sample_input(1))
    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED
    assert rec.completed == ["reserve_inventory", "process_payment", "create_shipment"]
    assert effects(actors, saga_id) == [
        "inventory.reserve_inventory", "payment.process_payment", "shipping.create_shipment"]
    after = ray.get(actors["inventory"].stock_levels.remote())
    assert after["WIDGET"] == before["WIDGET"] - 2 and after["GADGET"] == before["GADGET"] - 1
    assert rt.history(saga_id)[-1].event == "saga_completed"


def test_failed_step_compensates_in_reverse_and_restores_stock(shared):
    actors = deploy_order(shared, shipping={"create_shipment": Fault(fail=True)})
    before = ray.get(actors["inventory"].stock_levels.remote())
    money = ray.get(actors["payment"].balance.remote())["net_cents"]
    rt = shared.runtime
    saga_id = shared.start("order_fulfillment", sample_input(2))
    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["process_payment", "reserve_inventory"]
    assert effects(actors, saga_id) == [
        "inventory.release_inventory", "inventory.reserve_inventory",
        "payment.process_payment", "payment.refund_payment"]
    assert ray.get(actors["inventory"].stock_levels.remote()) == before
    assert ray.get(actors["payment"].balance.remote())["net_cents"] == money


def test_same_saga_id_twice_runs_once_and_a_different_input_conflicts(shared):
    actors = deploy_order(shared)
    rt = shared.runtime
    before = {r.saga_id for r in rt.list(limit=10_000)}
    first = shared.start("order_fulfillment", sample_input(3), saga_id="order-dup")
    second = shared.start("order_fulfillment", sample_input(3), saga_id="order-dup")
    assert first == second == "order-dup"
    rt.wait("order-dup", timeout_s=60)
    shared.start("order_fulfillment", sample_input(3), saga_id="order-dup")  # after the end too
    assert len(effects(actors, "order-dup")) == 3
    assert {r.saga_id for r in rt.list(limit=10_000)} - before == {"order-dup"}
    with pytest.raises(SagaConflictError, match="different input"):
        shared.start("order_fulfillment", sample_input(4), saga_id="order-dup")


SLOW = Saga(
    name="slow_order",
    input_model=ORDER_FULFILLMENT.input_model,
    steps=[
        ORDER_FULFILLMENT.steps[0],
        Step(name="process_payment", participant="payment", compensation="refund_payment",
             timeout_s=0.5, retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.05)),
    ],
)


def test_timed_out_calls_are_cancelled_on_the_participant(shared):
    shared.runtime.register(SLOW)
    actors = deploy_order(shared, payment={"process_payment": Fault(delay_s=60)})
    inventory, payment = actors["inventory"], actors["payment"]
    saga_id = shared.start("slow_order", sample_input(5))
    rec = shared.runtime.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.FAILED
    assert "timed out after 0.5s" in rec.error
    attempts = [t.attempt for t in shared.runtime.history(saga_id) if t.event == "action_sent"
                and t.step == "process_payment"]
    assert attempts == [1, 2]
    # both 60-second calls were stopped on the participant, and neither charged anything
    poll(lambda: ray.get(payment.busy_keys.remote()) == [], what="cancelled calls to end")
    assert ray.get(payment.ledger.remote(saga_id)) == []
    # the uncertain payment was "compensated" as a no-op tombstone; the reservation released
    assert rec.compensated == ["process_payment", "reserve_inventory"]
    assert [e["method"] for e in ray.get(inventory.ledger.remote(saga_id))] == [
        "reserve_inventory", "release_inventory"]


def test_operator_cancel_stops_the_call_and_compensates(shared):
    actors = deploy_order(shared, payment={"process_payment": Fault(delay_s=60)})
    rt = shared.runtime
    saga_id = shared.start("order_fulfillment", sample_input(6))
    poll(lambda: rt.get(saga_id).current_step == "process_payment", what="payment in flight")
    assert rt.cancel(saga_id, "customer called")
    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.FAILED and rec.error == "cancelled: customer called"
    assert rec.compensated == ["process_payment", "reserve_inventory"]
    poll(lambda: ray.get(actors["payment"].busy_keys.remote()) == [], what="call cancelled")
    assert effects(actors, saga_id) == ["inventory.release_inventory",
                                        "inventory.reserve_inventory"]
    assert not rt.cancel(saga_id)  # already over


def test_a_caller_that_needs_the_hosts_or_services_while_one_restarts_waits_for_it(
        make_harness):
    """A host, the supervisor or the registry that Ray is restarting (killed, a node lost,
    the count changed under hosts="auto"): a caller that looks them up again (a start
    after the host count changed, ``rt.services()``) or asks the supervisor (cancel,
    signal, publish) waits for it instead of failing with ActorUnavailableError (it did,
    every time)."""
    from saga_actors.ray.sagas import saga_hosts
    from saga_actors.ray.services import ensure_services

    h = make_harness(placement="hosted")
    actors = deploy_order(h)
    hosts = saga_hosts(h.runtime.config)
    for host in hosts * 2:
        ray.kill(host, no_restart=False)
        assert len(saga_hosts(h.runtime.config)) == len(hosts)
    for service in [*ensure_services(h.runtime.config)] * 2:
        ray.kill(service, no_restart=False)
        assert len(ensure_services(h.runtime.config)) == 2
    # an operator's request to a supervisor being restarted is sent again, not failed
    done = h.start("order_fulfillment", sample_input(4))
    assert h.runtime.wait(done, timeout_s=60).status is SagaStatus.COMPLETED
    for _ in range(2):
        ray.kill(h.runtime.supervisor, no_restart=False)
        assert h.runtime.cancel(done) is False  # (it had ended: nothing to cancel)
    saga_id = h.start("order_fulfillment", sample_input(3))
    assert h.runtime.wait(saga_id, timeout_s=60).status is SagaStatus.COMPLETED
    assert effects(actors, saga_id) == ["inventory.reserve_inventory",
                                        "payment.process_payment", "shipping.create_shipment"]
