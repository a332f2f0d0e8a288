"""Supervisor, registry, metrics, dashboard names and the CLI on the shared Ray instance."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request

import pytest
import ray
from click.testing import CliRunner
from ray.util.state import list_actors, list_tasks

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import Saga, SagaStatus
from saga_actors.constants import REGISTRY_ACTOR_NAME, SUPERVISOR_ACTOR_NAME, saga_actor_name
from saga_actors.ops.cli import main as cli_main
from saga_actors.ray.services import find_services
from saga_actors.testing import Fault
from tests.conftest import ROOT, poll, state_address

pytestmark = pytest.mark.ray
SAGA_ACTORS_BIN = os.path.join(os.path.dirname(sys.executable), "saga-actors")


def deploy(harness, **faults):
    """The order's participants, each with exactly ``faults`` (a shared harness keeps them)."""
    harness.runtime.register(ORDER_FULFILLMENT)
    return harness.deploy_many(PARTICIPANTS, **{p.name: faults.get(p.name, {})
                                                for p in PARTICIPANTS})


def in_flight(rt, saga_id, step="process_payment"):
    rec = rt.get(saga_id)
    return rec.current_step == step and rec.in_flight


def cli(harness, *args, check=True, in_process=True):
    """Run the saga-actors command against the session's Ray: in this process (fast; the
    command skips attaching), or as its own process, the way an operator runs it."""
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "token",
           "SAGA_ACTORS_NAMESPACE": harness.runtime.config.namespace}
    if in_process:
        result = CliRunner().invoke(cli_main, list(args), env=env)
        proc = subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
    else:
        proc = subprocess.run([SAGA_ACTORS_BIN, *args], capture_output=True, text=True,
                              timeout=120, env={**os.environ, **env}, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("placement", ["dedicated", "hosted"])
def test_supervisor_restarts_a_saga_actor_that_ray_will_not(make_harness, placement):
    # a quicker tick: hosts are checked every 10 ticks (5 s by default)
    placed = make_harness(placement=placement, supervisor_tick_s=0.2)
    actors = deploy(placed, payment={"process_payment": Fault(delay_s=1.0)})
    rt = placed.runtime
    saga_id = placed.start("order_fulfillment", sample_input(1))
    poll(lambda: in_flight(rt, saga_id), what="payment in flight")
    placed.kill_runner(saga_id, no_restart=True)  # Ray will not bring it back
    rec = rt.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.COMPLETED
    if placed.placement == "dedicated":  # a host is recreated and recovers its whole shard
        assert rec.restarts == 1
        assert "actor_restarted" in [t.event for t in rt.history(saga_id)]
    assert len(ray.get(actors["payment"].ledger.remote(saga_id))) == 1


# 4 s: on a busy machine a new host may take 2 s to start, and the saga must be paying
# (its first step done) when its deadline passes
DEADLINED = Saga(name="deadlined_order", input_model=ORDER_FULFILLMENT.input_model,
                 deadline_s=15, steps=ORDER_FULFILLMENT.steps)  # room for a loaded machine
# (8 s was not enough in a full suite on a slow hour of this VM: the saga had not reached
# its payment when the deadline passed)


def test_a_saga_past_its_deadline_is_compensated(shared):
    deploy(shared, payment={"process_payment": Fault(delay_s=60)})
    shared.runtime.register(DEADLINED)
    saga_id = shared.start("deadlined_order", sample_input(2))
    rec = shared.runtime.wait(saga_id, timeout_s=60)
    assert rec.status is SagaStatus.FAILED
    assert "deadline of 15s exceeded" in rec.error
    assert rec.compensated == ["process_payment", "reserve_inventory"]


def test_killing_supervisor_and_registry_mid_flight_loses_nothing(shared):
    actors = deploy(shared, payment={"process_payment": Fault(delay_s=1.0)})
    rt = shared.runtime
    ids = [shared.start("order_fulfillment", sample_input(n)) for n in range(4)]
    poll(lambda: any(in_flight(rt, i) for i in ids), what="a payment in flight")
    supervisor, registry = find_services(rt.config.namespace)
    ray.kill(supervisor, no_restart=False)
    ray.kill(registry, no_restart=False)
    # a saga actor dies while the supervisor is down: the restarted supervisor must notice
    victim = next(i for i in ids if not rt.get(i).status.terminal)
    with contextlib.suppress(ValueError):  # it finished first
        shared.kill_runner(victim, no_restart=True)
    records = rt.wait_all(ids, timeout_s=90)
    assert [r.status for r in records] == [SagaStatus.COMPLETED] * 4
    for i in ids:
        assert len(ray.get(actors["payment"].ledger.remote(i))) == 1
    _, registry = find_services(rt.config.namespace)
    def completed_in_registry():
        done = {e["saga_id"] for e in ray.get(registry.list.remote(limit=100))
                if e["status"] == "COMPLETED"}
        return set(ids) <= done

    poll(completed_in_registry, what="the rebuilt registry to list every saga COMPLETED")


def test_admission_control_bounds_live_saga_actors(make_harness):
    harness = make_harness(max_dedicated=2, saga_linger_s=0.1)  # slots free up sooner
    deploy(harness, payment={"process_payment": Fault(delay_s=0.5)})
    rt = harness.runtime
    ids = [rt.start("order_fulfillment", sample_input(n)) for n in range(70)]
    supervisor, _ = rt.services()
    poll(lambda: (s := ray.get(supervisor.status.remote()))["live"] == 2 and s["queued"] >= 50,
         what="two live sagas with 50+ queued")
    seen_live = []
    # while slots free up and queued sagas start, never more than K actors are alive
    while sum(rt.get(i).status.terminal for i in ids) < 4:
        seen_live.append(len(harness.saga_actors()))
        assert ray.get(supervisor.status.remote())["live"] <= 2
    assert max(seen_live) <= 2
    queued = [r for r in rt.list(limit=100) if r.status is SagaStatus.STARTED]
    assert len(queued) >= 40  # the rest wait durably in the journal


def test_state_api_lists_saga_actors_and_step_tasks_by_name(harness):
    deploy(harness, payment={"process_payment": Fault(delay_s=1.5)})
    rt = harness.runtime
    saga_id = rt.start("order_fulfillment", sample_input(3))
    poll(lambda: in_flight(rt, saga_id), what="payment in flight")
    actors = poll(lambda: list_actors(address=state_address(),
                                      filters=[("name", "=", saga_actor_name(saga_id))]),
                  what="saga actor in the state API")
    assert actors[0].state == "ALIVE" and actors[0].ray_namespace == rt.config.namespace
    for name in (SUPERVISOR_ACTOR_NAME, REGISTRY_ACTOR_NAME, "participant:payment"):
        assert list_actors(address=state_address(), filters=[
            ("name", "=", name), ("ray_namespace", "=", rt.config.namespace)])
    rt.wait(saga_id, timeout_s=60)
    for step in ("reserve_inventory", "process_payment", "create_shipment"):
        tasks = poll(lambda step=step: list_tasks(
            address=state_address(), filters=[("name", "=", f"{saga_id}/{step}")]),
                     what=f"task {saga_id}/{step}")
        assert tasks[0].name == f"{saga_id}/{step}"


def test_metrics_reach_rays_prometheus_endpoint(harness):
    deploy(harness)
    rt = harness.runtime
    rt.wait(rt.start("order_fulfillment", sample_input(4)), timeout_s=60)
    port = ray._private.worker.global_worker.node.metrics_export_port

    def scrape():
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        lines = body.decode().splitlines()
        wanted = ("ray_saga_actors_sagas{", "ray_saga_actors_steps_total{",
                  "ray_saga_actors_step_latency_seconds_bucket{")
        return all(any(line.startswith(w) for line in lines) for w in wanted) and lines

    lines = poll(scrape, timeout_s=90, every_s=1, what="saga metrics on /metrics")
    assert any('status="COMPLETED"' in line for line in lines
               if line.startswith("ray_saga_actors_sagas{"))
    assert any('outcome="succeeded"' in line for line in lines
               if line.startswith("ray_saga_actors_steps_total{"))


def test_cli_list_show_cancel_retry_resolve(harness):
    actors = deploy(harness, payment={"process_payment": Fault(delay_s=60),
                                      "refund_payment": Fault(fail=True)})
    rt = harness.runtime
    slow = rt.start("order_fulfillment", sample_input(5))
    poll(lambda: in_flight(rt, slow), what="payment in flight")
    assert "will compensate" in cli(harness, "cancel", slow, "--reason", "ops test",
                                    in_process=False).stdout
    rec = rt.wait(slow, timeout_s=60)
    # the refund fails for good: the cancelled saga is STUCK with its compensation pending
    assert rec.status is SagaStatus.STUCK and rec.to_compensate == ["process_payment",
                                                                     "reserve_inventory"]
    listed = json.loads(cli(harness, "list", "--json", "--status", "STUCK").stdout)
    assert [e["saga_id"] for e in listed] == [slow]
    assert {"saga_id", "saga_type", "status", "current_step", "updated_at"} <= set(listed[0])

    ray.get(actors["payment"].set_faults.remote({}))
    assert "resumes in COMPENSATING" in cli(harness, "retry", slow).stdout
    rec = rt.wait(slow, timeout_s=60)
    assert rec.status is SagaStatus.FAILED
    assert rec.compensated == ["process_payment", "reserve_inventory"]

    ray.get(actors["payment"].set_faults.remote({"process_payment": Fault(delay_s=60),
                                                 "refund_payment": Fault(fail=True)}))
    stuck = rt.start("order_fulfillment", sample_input(6))
    poll(lambda: in_flight(rt, stuck), what="second payment in flight")
    rt.cancel(stuck, "again")
    assert rt.wait(stuck, timeout_s=60).status is SagaStatus.STUCK
    cli(harness, "resolve", stuck, "--note", "refunded by hand")
    shown = json.loads(cli(harness, "show", stuck, "--json").stdout)
    assert shown["status"] == "FAILED" and "refunded by hand" in shown["error"]
    assert shown["history"][-1]["event"] == "resolved"
    assert {"saga_id", "status", "steps", "history"} <= set(shown)
    human = cli(harness, "show", stuck).stdout
    assert "process_payment" in human and "resolved" in human

    for args, message in [(("show", "no-such-saga"), "no saga with id 'no-such-saga'"),
                          (("retry", stuck), "is FAILED, not STUCK"),
                          (("cancel", stuck), "cannot be cancelled")]:
        proc = cli(harness, *args, check=False)
        assert proc.returncode != 0 and message in proc.stderr
    watched = cli(harness, "watch", "--count", "1").stdout
    assert "FAILED=2" in watched
