"""The runtime with its journal AND its participants' stores in PostgreSQL, on real Ray:
both placements and a choreography complete with each effect once, counted from the
stores' own tables on the server; when the server drops every connection, or restarts,
mid-flight, the sagas wait and go on with nothing lost or doubled."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from examples.order_choreography import ORDER_CHOREOGRAPHY
from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS, sample_input
from saga_actors import SagaStatus
from saga_actors.participant.stores import stores_beside
from saga_actors.testing import Fault
from tests.cluster import free_port
from tests.conftest import poll

pytestmark = pytest.mark.ray

FORWARD = {"inventory.reserve_inventory": 1, "payment.process_payment": 1,
           "shipping.create_shipment": 1}


def applied_in_postgres(database_url: str, prefix: str) -> dict[str, Counter]:
    """saga id -> "participant.method" -> times applied, read from the stores' schemas."""
    out: dict[str, Counter] = {}
    with psycopg.connect(database_url) as db:
        for name, schema in (("inventory", "inventory"), ("payment", "own_payment"),
                             ("shipping", "shipping")):
            for saga_id, method, n in db.execute(
                    f"SELECT saga_id, method, COUNT(*) FROM {prefix}{schema}.saga_effects "
                    "WHERE status = 'applied' GROUP BY saga_id, method"):
                out.setdefault(saga_id, Counter())[f"{name}.{method}"] += n
    return out


def run_through(make_harness, pg_url, pg_database, fault_in_flight) -> None:
    """Sagas of every placement, the server hit by ``fault_in_flight`` while their
    payments are in flight; every saga completes, every effect once, stock and money
    balance, all judged from the stores in PostgreSQL."""
    h = make_harness(journal_url=pg_url, store_url=stores_beside(pg_url))
    rt = h.runtime
    assert not rt.config.pin_node_id  # nothing of the runtime's lives on a node's disk
    rt.register(ORDER_FULFILLMENT)
    rt.register(ORDER_CHOREOGRAPHY)
    prefix = pg_url.split("schema=")[1] + "_"
    payment = next(c for c in PARTICIPANTS if c.name == "payment")
    # payment in a store of its own, the others in the runtime's store_url
    h.deploy_many([c for c in PARTICIPANTS if c is not payment])
    h.deploy(payment, store=f"{pg_database}?schema={prefix}own_payment",
             faults={"process_payment": Fault(delay_s=4.0)})
    inputs = [sample_input(n) for n in range(1, 7)]
    ids = [rt.start("order_fulfillment", inputs[0], placement="dedicated"),
           *rt.start_many("order_fulfillment", inputs[1:5], placement="hosted"),
           rt.start("order_choreography", inputs[5])]
    poll(lambda: sum(rt.get(i).current_step == "process_payment" for i in ids) >= 3,
         what="payments in flight")
    fault_in_flight()
    assert sum(rt.get(i).current_step == "process_payment" for i in ids) >= 1  # mid-flight
    records = rt.wait_all(ids, timeout_s=120)
    assert [r.status for r in records] == [SagaStatus.COMPLETED] * len(ids), [
        (r.saga_id, r.status, r.error) for r in records]
    effects = applied_in_postgres(pg_database, prefix)
    assert {i: dict(effects.get(i, {})) for i in ids} == {i: FORWARD for i in ids}
    with psycopg.connect(pg_database) as db:
        charged = db.execute(f"SELECT SUM(amount_cents) FROM {prefix}own_payment.charges"
                             ).fetchone()[0]
        stock = dict(db.execute(f"SELECT sku, qty FROM {prefix}inventory.stock"))
    assert charged == sum(i["amount_cents"] for i in inputs)
    for sku in stock:
        ordered = sum(item["qty"] for i in inputs for item in i["items"] if item["sku"] == sku)
        assert stock[sku] == 10_000 - ordered


def drop_every_connection(pg_database: str) -> None:
    database = pg_database.rsplit("/", 1)[1]
    admin = pg_database.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as db:
        dropped = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()[0]
    assert dropped >= 6  # the journal's and the stores' connections of every process


class PrivateServer:
    """A PostgreSQL server of this test's own (initdb in a temp folder, a free port, run as
    the ``postgres`` user: the server refuses root), so that restarting it takes down no
    other test's server (the suite runs on two workers at once)."""

    def __init__(self, folder: Path) -> None:
        self.bin = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True,
                                       text=True, check=True).stdout.strip())
        if not (self.bin / "initdb").exists():  # Debian's pg_config may be the client's
            self.bin = next(Path("/usr/lib/postgresql").glob("*/bin"))
        self.data = folder / "data"
        self.port = free_port()
        shutil.chown(folder, "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _as_postgres(self, *args: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def ctl(self, action: str) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                          str(self.data.parent / "server.log"), "-o",
                          f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1",
                          action)


@pytest.fixture
def private_server():
    # not under pytest's temp folder: it is root's alone, and the server runs as postgres
    folder = Path(tempfile.mkdtemp(prefix="saga-pg-", dir="/tmp"))
    try:
        server = PrivateServer(folder)
        server.ctl("start")
        try:
            with psycopg.connect(f"{server.url}/postgres", autocommit=True) as admin:
                admin.execute("CREATE DATABASE sagas")
            yield server
        finally:
            server.ctl("stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_sagas_survive_the_server_dropping_every_connection_then_restarting(
        make_harness, private_server):
    """Both faults in one run (one set of actors): first every connection of every
    process is killed, then, with payments still in flight, the server restarts."""
    database = f"{private_server.url}/sagas"

    def both():
        drop_every_connection(database)
        private_server.ctl("restart")

    run_through(make_harness, f"{database}?schema=t_{uuid.uuid4().hex[:10]}", database, both)
