"""Processes die mid-step; each effect still happens exactly once."""

from __future__ import annotations

import os

import pytest
import ray

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.ray.gateway import get_riding_restarts
from saga_actors.testing import Fault
from tests.conftest import poll

pytestmark = pytest.mark.ray


def deploy(harness, **faults):
    """The order's participants (started once per module), each with exactly ``faults``."""
    harness.runtime.register(ORDER_FULFILLMENT)
    return harness.deploy_many(PARTICIPANTS, **{p.name: faults.get(p.name, {})
                                                for p in PARTICIPANTS})


def payment_in_flight(rt, saga_id):
    rec = rt.get(saga_id)
    return rec.current_step == "process_payment" and rec.in_flight


def test_saga_actor_killed_mid_step_resumes_and_pays_once(shared):
    actors = deploy(shared, payment={"process_payment": Fault(delay_s=1.0)})
    rt = shared.runtime
    saga_id = shared.start("order_fulfillment", sample_input(1))
    poll(lambda: payment_in_flight(rt, saga_id), what="payment in flight")
    shared.kill_runner(saga_id, no_restart=False)  # a crash: Ray restarts it

    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED
    charges = ray.get(actors["payment"].ledger.remote(saga_id))
    assert [c["method"] for c in charges] == ["process_payment"]
    # the restarted instance re-sent attempt 1 with the same key instead of a new attempt;
    # it really was killed mid-payment: the history has no success of that attempt before
    # the re-send
    sent = [(t.step, t.attempt) for t in rt.history(saga_id) if t.event == "action_sent"]
    assert sent == [("reserve_inventory", 1), ("process_payment", 1), ("create_shipment", 1)]


def test_participant_killed_mid_step_is_sent_again_with_the_same_key(shared):
    """The call in flight dies with the process; while Ray restarts the participant the
    gateway sends the same request again, within the same attempt."""
    actors = deploy(shared, payment={"process_payment": Fault(delay_s=1.0)})
    rt = shared.runtime
    saga_id = shared.start("order_fulfillment", sample_input(2))
    poll(lambda: payment_in_flight(rt, saga_id), what="payment in flight")
    ray.kill(actors["payment"], no_restart=False)

    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED
    history = rt.history(saga_id)
    assert [t.attempt for t in history if t.event == "action_sent"
            and t.step == "process_payment"] == [1]
    assert not [t for t in history if t.event == "action_attempt_failed"]  # no attempt lost
    charges = ray.get(actors["payment"].ledger.remote(saga_id))
    assert [c["key"] for c in charges] == [f"{saga_id}/process_payment/action"]


def test_participants_and_hosts_recycle_their_processes_and_lose_nothing(make_harness):
    """Past ``recycle_after_tasks`` a participant or a host restarts its own process (Ray
    keeps state per task name for a process's whole life); calls cut short are sent again
    with the same keys and the host's sagas resume from the journal: every saga completes,
    every effect once."""
    h = make_harness(placement="hosted", recycle_after_tasks=20, batch_calls=False)
    actors = deploy(h, payment={"process_payment": Fault(delay_s=0.2)})
    rt = h.runtime
    pids = {name: ray.get(a.__ray_call__.remote(lambda self: os.getpid()))
            for name, a in actors.items()}
    host_pid = ray.get(rt.hosts()[0].stats.remote())["pid"]
    ids = [h.start("order_fulfillment", sample_input(n)) for n in range(24)]
    records = rt.wait_all(ids, timeout_s=120)
    assert [r.status for r in records] == [SagaStatus.COMPLETED] * len(ids)
    # these calls count toward the recycle too: a participant may restart between them
    for name, actor in actors.items():
        for i in ids:
            assert len(get_riding_restarts(lambda a=actor, i=i: a.ledger.remote(i))) == 1, (
                name, i)
    after = {name: get_riding_restarts(lambda a=a: a.__ray_call__.remote(
        lambda self: os.getpid())) for name, a in actors.items()}
    assert all(after[n] != pids[n] for n in pids), (pids, after)  # each was recycled
    poll(lambda: get_riding_restarts(lambda: rt.hosts()[0].stats.remote())["pid"] != host_pid,
         what="the host to have recycled its process")
