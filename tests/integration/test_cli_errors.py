"""The CLI says what really happened: a host that does not answer is reported as such (and
the command fails), and options work before or after the command."""

from __future__ import annotations

import json
import os
import signal

import pytest
import ray
from click.testing import CliRunner
from ray.util.state import list_actors

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import RunnerUnavailableError, SagaStatus
from saga_actors.constants import REGISTRY_ACTOR_NAME, host_actor_name, shard_of
from saga_actors.ops.cli import main
from saga_actors.testing import Fault
from tests.conftest import poll, state_address

pytestmark = pytest.mark.ray


def cli(*args: str):
    address = ray.get_runtime_context().gcs_address
    return CliRunner().invoke(main, list(args), env={"RAY_ADDRESS": address,
                                                     "RAY_AUTH_MODE": "token"})


def test_a_host_that_does_not_answer_is_reported_and_the_command_fails(make_harness):
    h = make_harness(placement="hosted", runner_answer_timeout_s=2.0)
    rt = h.runtime
    rt.register(ORDER_FULFILLMENT)
    h.deploy_many(PARTICIPANTS, payment={"process_payment": Fault(delay_s=30)})
    saga_id = h.start("order_fulfillment", sample_input(1))
    poll(lambda: rt.get(saga_id).current_step == "process_payment", what="payment in flight")
    index = shard_of(saga_id, rt.config.hosts)
    pid = ray.get(rt.hosts()[index].stats.remote())["pid"]
    ns = rt.config.namespace
    os.kill(pid, signal.SIGSTOP)  # the host hangs: alive, but it answers nobody
    try:
        frozen = cli("cancel", saga_id, "--namespace", ns)
        with pytest.raises(RunnerUnavailableError, match="did not answer cancel"):
            rt.cancel(saga_id)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert frozen.exit_code != 0
    assert f"{host_actor_name(index)} did not answer cancel (no answer within 2s)" in \
        frozen.output, frozen.output
    assert "past its pivot" not in frozen.output
    # once it answers again, the same command works (or says the saga is already FAILED:
    # the cancels sent while it hung reach it as it wakes, and may have finished first)
    done = cli("cancel", saga_id, "--namespace", ns)
    assert done.exit_code == 0 or "it is already FAILED" in done.output, done.output
    assert rt.wait(saga_id, timeout_s=60).status is SagaStatus.FAILED
    again = cli("--namespace", ns, "cancel", saga_id)
    assert again.exit_code != 0 and "it is already FAILED" in again.output
    listed = cli("list", "--namespace", ns, "--address", ray.get_runtime_context().gcs_address)
    assert listed.exit_code == 0 and saga_id in listed.output


def test_list_show_and_cancel_answer_while_the_registry_and_supervisor_are_down(make_harness):
    """A node loss takes the registry or the supervisor away for a while: the read commands
    answer from the journal, saying so; an operator command waits for the supervisor to be
    back, saying so; none ends in a traceback."""
    h = make_harness(placement="hosted")
    rt = h.runtime
    rt.register(ORDER_FULFILLMENT)
    h.deploy_many(PARTICIPANTS, payment={"process_payment": Fault(delay_s=30)})
    slow = h.start("order_fulfillment", sample_input(1))
    poll(lambda: rt.get(slow).current_step == "process_payment", what="payment in flight")
    ns = rt.config.namespace
    services = cli("services", "--json", "--namespace", ns)
    assert services.exit_code == 0, services.output
    assert {(r["name"], r["kind"]) for r in json.loads(services.stdout)} >= {
        ("participant:payment", "participant"), (host_actor_name(0), "host"),
        (REGISTRY_ACTOR_NAME, "registry")}
    registry = list_actors(address=state_address(), filters=[
        ("ray_namespace", "=", ns), ("name", "=", REGISTRY_ACTOR_NAME)])[0]
    os.kill(registry.pid, signal.SIGSTOP)  # as if its node were cut off: no answer
    try:
        listed = cli("list", "--json", "--namespace", ns)
    finally:
        os.kill(registry.pid, signal.SIGCONT)
    assert listed.exit_code == 0, listed.output
    assert [e["saga_id"] for e in json.loads(listed.stdout)] == [slow]
    assert "registry is not answering (no answer within 10s)" in listed.stderr
    assert "answered from the journal" in listed.stderr
    ray.kill(rt.registry, no_restart=True)  # gone (not yet restarted elsewhere)
    shown = cli("show", slow, "--namespace", ns)
    assert shown.exit_code == 0 and "process_payment" in shown.stdout, shown.output
    assert "registry is not answering (not running)" in shown.stderr
    watched = cli("watch", "--count", "1", "--namespace", ns)
    assert watched.exit_code == 0 and slow in watched.stdout, watched.output

    ray.kill(rt.supervisor, no_restart=False)  # a crash: Ray restarts it
    cancelled = cli("cancel", slow, "--namespace", ns)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancel requested" in cancelled.stdout
    assert rt.wait(slow, timeout_s=60).status is SagaStatus.FAILED
    for result in (listed, shown, watched, cancelled):
        assert "Traceback" not in result.output and result.exception is None or isinstance(
            result.exception, SystemExit)
