"""The runtime on a PostgreSQL journal, on real Ray: both placements and a choreography
complete with each effect once, and when the server drops every connection mid-flight
the sagas wait and go on, with nothing lost or doubled."""

from __future__ import annotations

import psycopg
import pytest
import ray

from examples.order_choreography import ORDER_CHOREOGRAPHY
from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.testing import Fault
from tests.conftest import poll

pytestmark = pytest.mark.ray

FORWARD = ["inventory.reserve_inventory", "payment.process_payment", "shipping.create_shipment"]


def applied(actors, saga_id) -> list[str]:
    return sorted(f"{n}.{e['method']}" for n, a in actors.items()
                  for e in ray.get(a.ledger.remote(saga_id)))


def test_sagas_on_a_postgres_journal_survive_the_server_dropping_every_connection(
        make_harness, pg_url, pg_database):
    h = make_harness(journal_url=pg_url)
    rt = h.runtime
    rt.register(ORDER_FULFILLMENT)
    rt.register(ORDER_CHOREOGRAPHY)
    actors = h.deploy_many(PARTICIPANTS, payment={"process_payment": Fault(delay_s=1.0)})
    ids = [rt.start("order_fulfillment", sample_input(1), placement="dedicated"),
           *rt.start_many("order_fulfillment", [sample_input(n) for n in range(2, 6)],
                          placement="hosted"),
           rt.start("order_choreography", sample_input(6))]
    poll(lambda: sum(rt.get(i).current_step == "process_payment" for i in ids) >= 3,
         what="payments in flight")
    database = pg_database.rsplit("/", 1)[1]
    with psycopg.connect(pg_database.rsplit("/", 1)[0] + "/postgres", autocommit=True) as db:
        dropped = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()[0]
    assert dropped >= 3  # the journal's connections of every process
    records = rt.wait_all(ids, timeout_s=120)
    assert [r.status for r in records] == [SagaStatus.COMPLETED] * len(ids)
    for saga_id in ids:
        assert applied(actors, saga_id) == FORWARD  # once each, after the drop too
