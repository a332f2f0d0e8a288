"""``SagaRuntime.execute``: one alone is answered by its host when it ends; many at once are
started in bulk and their ends polled, one call per host. Either way each returns its
terminal record, also when the host dies while they run, and each effect happens once."""

from __future__ import annotations

import asyncio

import pytest
import ray

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.testing import Fault
from tests.fakes import until

pytestmark = pytest.mark.ray


def applied(actors, saga_id: str) -> list[str]:
    return sorted(f"{name}.{e['method']}" for name, a in actors.items()
                  for e in ray.get(a.ledger.remote(saga_id)))


FORWARD = ["inventory.reserve_inventory", "payment.process_payment", "shipping.create_shipment"]
UNDONE = ["inventory.release_inventory", "inventory.reserve_inventory"]  # (card declined)


def test_many_executes_at_once_each_end_with_their_record_through_a_host_crash(make_harness):
    harness = make_harness(placement="hosted", hosts=2)
    rt = harness.runtime
    rt.register(ORDER_FULFILLMENT)
    actors = harness.deploy_many(PARTICIPANTS)
    ray.get(actors["payment"].set_faults.remote({"process_payment": Fault(delay_s=0.3)}))

    async def run_all():
        alone = await rt.execute("order_fulfillment", sample_input(0), saga_id="alone",
                                 placement="hosted")
        assert alone.status is SagaStatus.COMPLETED  # (the path of one at a time)
        inputs = {f"x{n}": sample_input(n) for n in range(1, 31)}
        for n in (3, 7):  # declined: the whole saga is undone
            inputs[f"x{n}"] = {**inputs[f"x{n}"], "customer_id": "declined"}
        runs = [asyncio.ensure_future(rt.execute("order_fulfillment", payload, saga_id=sid,
                                                   placement="hosted"))
                for sid, payload in inputs.items()]
        # the host of half of them dies while they wait at the payment
        await until(lambda: getattr(rt.journal.load("x1"), "current_step", None) ==
                    "process_payment", timeout_s=60, what="x1 at the payment")
        harness.kill_runner("x1", no_restart=False)
        return alone, inputs, await asyncio.wait_for(asyncio.gather(*runs), 120)

    alone, inputs, records = asyncio.run(run_all())
    assert applied(actors, "alone") == FORWARD
    for (saga_id, payload), record in zip(inputs.items(), records, strict=True):
        assert record.saga_id == saga_id and record.status.terminal
        assert record == rt.get(saga_id)  # what the journal says
        declined = payload["customer_id"] == "declined"
        assert record.status is (SagaStatus.FAILED if declined else SagaStatus.COMPLETED)
        assert applied(actors, saga_id) == (UNDONE if declined else FORWARD)
