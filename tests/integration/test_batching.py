"""A host sends the calls its sagas make to one participant in the same instant as one Ray
task; each request keeps its own reply, timeout, cancellation and resend."""

from __future__ import annotations

import asyncio

import pytest
import ray
from pydantic import BaseModel
from ray.util.state import list_tasks

from saga_actors import (
    Participant,
    Saga,
    SagaStatus,
    StepContext,
    StepTimeoutError,
    action,
    compensation,
)
from saga_actors.model.messages import StepRequest
from saga_actors.ray.gateway import RayGateway
from saga_actors.testing import Fault
from tests.conftest import poll, state_address
from tests.fakes import until

pytestmark = pytest.mark.ray


class Tally(Participant):
    name = "tally"

    @action
    def count(self, ctx: StepContext) -> dict:
        return {f"counted_{ctx.step}": ctx.data["n"]}  # outputs may not overwrite ctx.data

    @compensation("count")
    def uncount(self, ctx: StepContext) -> dict:
        return {}


class TallyInput(BaseModel):
    n: int


TALLY_TWICE = Saga(
    name="tally_twice",
    input_model=TallyInput,
    steps=[{"name": "first", "participant": "tally", "action": "count", "compensation": "uncount"},
           {"name": "second", "participant": "tally", "action": "count",
            "compensation": "uncount"}],
)


def request(saga_id: str, attempt: int = 1) -> StepRequest:
    return StepRequest(saga_id=saga_id, saga_type="t", step="first", kind="action",
                       method="count", attempt=attempt, data={"n": 1})


def gather(gateway: RayGateway, *calls: tuple[StepRequest, float]) -> list:
    """Send ``calls`` in one loop turn (so they form one batch); replies or errors."""
    async def run():
        return await asyncio.gather(*(gateway.call("tally", r, t) for r, t in calls),
                                    return_exceptions=True)
    return asyncio.run(run())


def test_sagas_of_one_host_share_ray_calls_and_apply_each_effect_once(make_harness):
    h = make_harness(placement="hosted", hosts=1)
    tally = h.deploy(Tally)
    ids = h.runtime.start_many(TALLY_TWICE, [{"n": i} for i in range(40)], placement="hosted")
    records = h.runtime.wait_all(ids, timeout_s=60)
    assert {r.status for r in records} == {SagaStatus.COMPLETED}
    ledger = ray.get(tally.ledger.remote())
    assert sorted(e["key"] for e in ledger) == sorted(
        f"{i}/{step}/action" for i in ids for step in ("first", "second"))
    sent = ray.get(h.runtime.hosts()[0].stats.remote())
    assert sent["requests"] == 80
    assert sent["ray_calls"] < sent["requests"]  # started together, they travelled together


def test_a_batch_is_one_task_named_after_every_step_it_carries(make_harness):
    h = make_harness()
    h.deploy(Tally)
    gateway = RayGateway(h.runtime.config.namespace, batch=True)
    a, b = request("batch-name-a"), request("batch-name-b")
    replies = gather(gateway, (a, 30), (b, 30))
    assert [r.ok for r in replies] == [True, True]
    assert gateway.sent == {"ray_calls": 1, "requests": 2}
    name = f"{a.task_name},{b.task_name}"
    poll(lambda: list_tasks(address=state_address(), filters=[("name", "=", name)],
                            raise_on_missing_output=False),
         what=f"task {name} in the state API")


def test_a_timeout_in_a_batch_stops_only_that_request(make_harness):
    h = make_harness()
    tally = h.deploy(Tally, faults={"count": Fault(delay_s=2)})
    gateway = RayGateway(h.runtime.config.namespace, batch=True)
    impatient, patient = request("impatient"), request("patient")
    replies = gather(gateway, (impatient, 0.3), (patient, 30))
    assert isinstance(replies[0], StepTimeoutError)
    assert replies[1].ok and not replies[1].replayed
    assert gateway.sent["ray_calls"] == 1
    poll(lambda: ray.get(tally.busy_keys.remote()) == [], what="no call left running")
    assert [e["saga_id"] for e in ray.get(tally.ledger.remote())] == ["patient"]


def test_a_batch_caught_in_a_participant_restart_is_sent_again(make_harness):
    h = make_harness()
    tally = h.deploy(Tally, faults={"count": Fault(delay_s=1)})
    gateway = RayGateway(h.runtime.config.namespace, batch=True)

    async def run():
        calls = asyncio.gather(*(gateway.call("tally", request(i), 30) for i in ("r1", "r2")))
        async def both_running() -> bool:
            return len(await tally.busy_keys.remote()) >= 2

        await until(both_running, what="both requests running on the participant",
                    every_s=0.01)
        ray.kill(tally, no_restart=False)  # mid-call: outcome unknown
        return await calls

    replies = asyncio.run(run())
    assert [r.ok for r in replies] == [True, True]
    assert gateway.sent["ray_calls"] >= 2  # the batch, then the requests again
    assert sorted(e["saga_id"] for e in ray.get(tally.ledger.remote())) == ["r1", "r2"]

