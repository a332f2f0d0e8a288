"""Definitions that cannot be imported, hosts that died, and bulk starts retried: every
journaled saga still ends, each effect once (acceptance findings 2 and 3)."""

from __future__ import annotations

import time

import pytest
import ray
from pydantic import BaseModel, Field

from examples.order_fulfillment import PARTICIPANTS, sample_input
from saga_actors import RetryPolicy, Saga, SagaConflictError, SagaStatus, Step
from saga_actors.constants import shard_of
from saga_actors.engine.admission import admit, build_record
from saga_actors.testing import Fault
from tests.conftest import poll

pytestmark = pytest.mark.ray


def local_order_saga(name: str) -> Saga:
    """A saga type made inside a function: its definition cannot be imported by name."""

    class LocalOrder(BaseModel):  # defined here, on purpose
        order_id: str
        customer_id: str
        items: list[dict]
        amount_cents: int = Field(gt=0)
        address: str

    return Saga(name=name, input_model=LocalOrder, steps=[
        Step(name="reserve_inventory", participant="inventory",
             compensation="release_inventory", timeout_s=10),
        Step(name="process_payment", participant="payment", compensation="refund_payment",
             timeout_s=10, retry=RetryPolicy(max_attempts=4, initial_backoff_s=0.1)),
        Step(name="create_shipment", participant="shipping", compensation="cancel_shipment",
             timeout_s=10),
    ])


def applied(actors, saga_id) -> list[str]:
    """Applied effects of ``saga_id``, read from the participants' own stores."""
    return sorted(f"{name}.{e['method']}" for name, a in actors.items()
                  for e in ray.get(a.ledger.remote(saga_id)))


FORWARD = ["inventory.reserve_inventory", "payment.process_payment",
           "shipping.create_shipment"]


def test_an_unimportable_saga_recovers_after_its_runner_crashes(placed):
    """Regression (finding 3): a hosted saga whose definition was made in a function was
    left PENDING for ever after its host crashed; the new host now gets the definition
    from the cluster. The supervisor is killed too, so it must find it the same way."""
    actors = placed.deploy_many(PARTICIPANTS, payment={"process_payment": Fault(delay_s=1.0)})
    rt = placed.runtime
    saga = local_order_saga(f"local_{placed.placement}")
    rt.register(saga)
    saga_id = placed.start(saga.name, sample_input(1))
    poll(lambda: rt.get(saga_id).current_step == "process_payment" and rt.get(saga_id).in_flight,
         what="payment in flight")
    ray.kill(rt.supervisor, no_restart=False)
    placed.kill_runner(saga_id, no_restart=False)
    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED, rec.error
    assert applied(actors, saga_id) == FORWARD
    # which actor runs it, for the dashboard: its own, or its host
    runner = rt.runner_of(saga_id)
    assert runner == (f"saga:{saga_id}" if placed.placement == "dedicated"
                      else f"saga_actors:host:{shard_of(saga_id, rt.config.hosts)}")
    assert ray.get(rt.registry.get.remote(saga_id))["runner"] == runner


def test_a_saga_whose_definition_nobody_has_waits_visibly_then_recovers(placed):
    """After a whole-cluster restart nobody may have registered a saga's definition yet:
    the saga waits, and says so (registry, CLI), and runs once the definition comes."""
    from click.testing import CliRunner

    from saga_actors.ops.cli import main

    actors = placed.deploy_many(PARTICIPANTS)
    rt = placed.runtime
    saga = local_order_saga(f"orphan_{placed.placement}")
    # journaled by a process that is gone now (as after a whole-cluster restart)
    record = build_record(saga, f"orphan-{placed.placement}", sample_input(2), now=time.time(),
                          placement=placed.placement)
    admit(rt.journal, record)
    rt.services()  # the supervisor starts and recovers what the journal holds
    waiting = poll(lambda: rt.get(record.saga_id).waiting_for, what="the saga to wait")
    assert f"'{saga.name}' v1" in waiting
    assert rt.get(record.saga_id).status is SagaStatus.STARTED
    def listed() -> str:
        shown = CliRunner().invoke(main, ["--address", ray.get_runtime_context().gcs_address,
                                          "--namespace", rt.config.namespace, "list"])
        return "waiting for its definition" in shown.output and shown.output

    poll(listed, what="saga-actors list to show the saga waiting (registry resync)")
    assert applied(actors, record.saga_id) == []

    rt.register(saga)  # someone registers it: the saga recovers at once
    rec = rt.wait(record.saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED and rec.waiting_for is None
    assert applied(actors, record.saga_id) == FORWARD
    assert "definition_missing" in [t.event for t in rt.history(record.saga_id)]


def test_start_many_after_the_hosts_died_starts_each_saga_once(make_harness):
    """Regression (finding 2): start_many raised ActorDiedError after journaling (so a
    caller retried and charged twice). Now it finds the live hosts, never fails once the
    sagas are journaled, and with caller-chosen ids a retry starts nothing twice."""
    from examples.order_fulfillment import ORDER_FULFILLMENT
    from saga_actors.constants import host_actor_name

    h = make_harness(placement="hosted")
    rt = h.runtime
    rt.register(ORDER_FULFILLMENT)
    actors = h.deploy_many(PARTICIPANTS)
    first = rt.start_many("order_fulfillment", [sample_input(1)], placement="hosted")
    rt.wait_all(first, timeout_s=60)
    for i in range(rt.config.hosts):  # the runtime holds these handles; they die for good
        ray.kill(ray.get_actor(host_actor_name(i), rt.config.namespace), no_restart=True)

    ids = [f"bulk-{n}" for n in range(4)]
    inputs = [sample_input(10 + n) for n in range(4)]
    assert rt.start_many("order_fulfillment", inputs, saga_ids=ids, placement="hosted") == ids
    assert rt.start_many("order_fulfillment", inputs, saga_ids=ids, placement="hosted") == ids
    records = rt.wait_all(ids, timeout_s=90)
    assert [r.status for r in records] == [SagaStatus.COMPLETED] * 4
    for saga_id in ids:
        assert applied(actors, saga_id) == FORWARD  # once each, after the retry too
    with pytest.raises(SagaConflictError, match="different input"):
        rt.start_many("order_fulfillment", [sample_input(99)], saga_ids=["bulk-0"],
                      placement="hosted")
    with pytest.raises(SagaConflictError, match="given twice"):
        rt.start_many("order_fulfillment", [inputs[0], inputs[0]], saga_ids=["x", "x"])


def test_two_versions_run_side_by_side_and_a_changed_old_version_is_refused(harness):
    """v1 (three steps) and v2 (no shipment) registered at once: new starts take v2 unless
    told v1; each saga runs on its own version, on both placements. Registering another
    shape as v1, while v1 sagas are unfinished, is refused and changes nothing."""
    from saga_actors import SagaDefinitionError, UnknownSagaTypeError
    from saga_actors.model.shapes import shape_hash

    actors = harness.deploy_many(PARTICIPANTS, payment={"process_payment": Fault(delay_s=1.0)})
    rt = harness.runtime
    v1 = local_order_saga("versioned")
    v2 = v1.model_copy(update={"version": 2, "steps": v1.steps[:2]})
    rt.register(v1)
    rt.register(v2)
    ids = {(version, placement): rt.start("versioned", sample_input(n), placement=placement,
                                          **({"version": version} if version == 1 else {}))
           for n, (version, placement) in enumerate([(1, "dedicated"), (2, "dedicated"),
                                                     (1, "hosted"), (2, "hosted")])}
    poll(lambda: rt.get(ids[(1, "dedicated")]).current_step == "process_payment",
         what="a v1 saga in flight")
    changed = v1.model_copy(update={"steps": (*v1.steps[:2], v1.steps[2].model_copy(
        update={"compensation": "refund_payment", "participant": "payment",
                "action": "process_payment", "name": "charge_again"}))})
    with pytest.raises(SagaDefinitionError, match="already registered with another shape"):
        rt.register(changed)
    with pytest.raises(UnknownSagaTypeError, match="versioned v3"):
        rt.start("versioned", sample_input(9), version=3)
    for (version, placement), saga_id in ids.items():
        rec = rt.wait(saga_id, timeout_s=60)
        assert rec.status is SagaStatus.COMPLETED, (version, placement, rec.error)
        assert rec.version == version
        assert rec.shape == shape_hash(v1 if version == 1 else v2)
        assert applied(actors, saga_id) == (FORWARD if version == 1 else FORWARD[:2])
