"""Participants with replicas on real Ray: calls spread by saga, a replica killed mid-call,
and `scale` up and down while sagas run. Judged from the participants' own stores."""

from __future__ import annotations

import collections

import pytest
import ray
from click.testing import CliRunner

from examples.order_fulfillment import ORDER_FULFILLMENT, sample_input
from participants.inventory import Inventory
from participants.payment import Payment
from participants.shipping import Shipping
from saga_actors import ParticipantPlacementError, SagaStatus
from saga_actors.constants import participant_actor_name
from saga_actors.ops.cli import main
from saga_actors.ray.gateway import RayGateway
from saga_actors.testing import Fault
from tests.conftest import poll

pytestmark = pytest.mark.ray

FORWARD = {"inventory.reserve_inventory": 1, "payment.process_payment": 1,
           "shipping.create_shipment": 1}


def effects(h, saga_id: str) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    for name in ("inventory", "payment", "shipping"):
        actor = ray.get_actor(participant_actor_name(name), h.runtime.config.namespace)
        for e in ray.get(actor.ledger.remote(saga_id)):  # the shared store: every replica's
            out[f"{name}.{e['method']}"] += 1
    return dict(out)


def served(h, name: str, replicas: int) -> list[int]:
    ns = h.runtime.config.namespace
    return [ray.get(ray.get_actor(participant_actor_name(name, i), ns).served.remote())
            ["requests"] for i in range(replicas)]


def test_replicas_share_the_work_and_a_replica_killed_mid_call_loses_nothing(make_harness):
    h = make_harness(placement="hosted")
    rt = h.runtime
    rt.register(ORDER_FULFILLMENT)
    h.deploy_many((Inventory, Shipping))
    rt.deploy(Payment, replicas=2)
    ids = [rt.start(ORDER_FULFILLMENT.name, sample_input(i), saga_id=f"r{i}") for i in range(12)]
    for rec in rt.wait_all(ids, timeout_s=60):
        assert rec.status is SagaStatus.COMPLETED, rec.error
        assert effects(h, rec.saga_id) == FORWARD
    assert all(n > 0 for n in served(h, "payment", 2))  # both replicas served

    # a replica killed while it holds a payment: the saga's call is sent again, same key
    gateway = RayGateway(rt.config.namespace)
    target = next(f"k{i}" for i in range(100)
                  if gateway.actor_name("payment", f"k{i}") == participant_actor_name(
                      "payment", 1))
    ns = rt.config.namespace
    replica = ray.get_actor(participant_actor_name("payment", 1), ns)
    ray.get(replica.set_faults.remote({"process_payment": Fault(delay_s=2.0, times=1)}))
    rt.start(ORDER_FULFILLMENT.name, sample_input(50), saga_id=target)
    poll(lambda: rt.get(target).current_step == "process_payment" and rt.get(target).in_flight,
         what="the payment in flight on replica 1")
    ray.kill(replica, no_restart=False)
    rec = rt.wait(target, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED, rec.error
    assert effects(h, target) == FORWARD  # charged once
    # show names the replica that applied each step (the restarted replica 1 here)
    steps = {s["step"]: s for s in ray.get(rt.registry.get.remote(target))["steps"]}
    assert steps["process_payment"]["replica"] == 1
    text = CliRunner().invoke(main, ["--address", ray.get_runtime_context().gcs_address,
                                     "--namespace", ns, "show", target]).output
    assert "REPLICA" in text, text


def test_scale_up_and_down_while_sagas_run(make_harness):
    h = make_harness(placement="hosted")
    rt = h.runtime
    rt.register(ORDER_FULFILLMENT)
    h.deploy_many((Inventory, Shipping))
    rt.deploy(Payment, faults={"process_payment": Fault(delay_s=0.3)})
    ids = [rt.start(ORDER_FULFILLMENT.name, sample_input(i), saga_id=f"s{i}")
           for i in range(30)]
    assert rt.scale("payment", 3) == 1  # up, mid-flight
    more = [rt.start(ORDER_FULFILLMENT.name, sample_input(i), saga_id=f"t{i}")
            for i in range(30)]
    ns = rt.config.namespace
    said = CliRunner().invoke(main, ["--address", ray.get_runtime_context().gcs_address,
                                     "--namespace", ns, "scale", "payment", "1"])
    assert said.exit_code == 0 and "payment: 3 -> 1 replica(s)" in said.output, said.output
    for rec in rt.wait_all([*ids, *more], timeout_s=120):
        assert rec.status is SagaStatus.COMPLETED, rec.error
        assert effects(h, rec.saga_id) == FORWARD  # nothing lost, nothing twice
    with pytest.raises(ValueError):
        ray.get_actor(participant_actor_name("payment", 2), ns)  # scaled away
    with pytest.raises(ParticipantPlacementError, match="whole number >= 1"):
        rt.scale("payment", 0)
    with pytest.raises(ParticipantPlacementError, match="never deployed"):
        rt.scale("nobody", 2)
