"""A real three-node Ray cluster (`ray start`), shared by the tests of this module, in
order: launch into it with SQLite files (everything pinned to the driver's node), let the
driver exit, see everything from elsewhere, launch as a Ray job on PostgreSQL; then, with
the journal and the stores in PostgreSQL (nothing pinned), lose a worker node mid-flight;
last, a power cut of the whole cluster, and a new cluster finishes every saga.
"""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from participants.inventory import DEFAULT_STOCK
from saga_actors.constants import (
    BUS_ACTOR_PREFIX,
    HOST_ACTOR_PREFIX,
    PARTICIPANT_ACTOR_PREFIX,
    participant_actor_name,
)
from saga_actors.journal import open_journal
from saga_actors.model.records import runner_name
from saga_actors.services.spread import fair_share
from tests.cluster import BIN, LocalCluster
from tests.conftest import poll

# each test first brings up three `ray start` nodes: on a slow hour of this 2-core VM that
# alone took more than the suite's 120 s per test (setup included)
pytestmark = pytest.mark.timeout(360)


@pytest.fixture(scope="module")
def cluster():
    # Ray declares a node dead after 2 missed health checks 1 s apart (default 5 x 3 s)
    c = LocalCluster()
    try:  # (stopped also when its start times out: a cluster left running slows the rest)
        yield c.start(RAY_health_check_period_ms="1000",
                      RAY_health_check_failure_threshold="2").add_worker().add_worker()
    finally:
        c.stop()


def test_sagas_outlive_their_driver_and_are_seen_by_another(cluster, tmp_path, pg_url):
    data = str(tmp_path / "data")
    launched = cluster.run(sys.executable, "scripts/launch_sagas.py", "--address",
                           cluster.address, "--no-wait", "--count", "4", "--json",
                           "--slow-step", "process_payment", "--slow-s", "1",
                           "--data-dir", data)
    ids = {s["saga_id"] for s in json.loads(launched.stdout)["sagas"]}  # the driver has exited
    assert len(ids) == 4

    journal = open_journal(f"sqlite:///{data}/journal.sqlite", read_only=True)
    poll(lambda: all(journal.load(i).status.value == "COMPLETED" for i in ids),
         timeout_s=120, every_s=0.2, what="4 COMPLETED sagas in the journal")
    # three nodes, SQLite files on this one: every saga_actors actor was pinned here; and a
    # second driver (another process) sees the sagas through its own SagaRuntime
    seen = json.loads(cluster.run(sys.executable, "-c", textwrap.dedent(f"""
        import json, os, ray
        from ray.util.state import list_actors
        from saga_actors import SagaRuntime
        rt = SagaRuntime(address=os.environ["RAY_ADDRESS"], data_dir={data!r})
        me = ray.get_runtime_context().get_node_id()
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        actors = list_actors(address=ray.get_runtime_context().gcs_address, limit=10_000,
                             filters=[("ray_namespace", "=", "saga_actors")])
        print(json.dumps({{"nodes": len(nodes), "here": me,
                          "placed": sorted({{a.node_id for a in actors if a.node_id}}),
                          "sagas": {{r.saga_id: r.status.value for r in rt.list()}}}}))
    """)).stdout.strip().splitlines()[-1])
    assert seen["nodes"] == 3 and seen["placed"] == [seen["here"]], seen
    assert seen["sagas"] == {i: "COMPLETED" for i in ids}
    out = cluster.run(str(BIN / "saga-actors"), "list", "--json")  # the CLI sees them too
    rows = {e["saga_id"]: e for e in json.loads(out.stdout)}
    assert set(rows) == ids and {e["status"] for e in rows.values()} == {"COMPLETED"}
    assert {"saga_id", "saga_type", "status", "current_step", "updated_at"} <= set(
        next(iter(rows.values())))

    # the same launch as a Ray job, on a PostgreSQL journal (the stores go beside it): the
    # job's driver finds the cluster through RAY_ADDRESS; the result is read from the journal
    def submit():
        job = cluster.run(str(BIN / "ray"), "job", "submit", "--address",
                          f"http://127.0.0.1:{cluster.dashboard_port}", "--working-dir", ".",
                          "--", "python", "scripts/launch_sagas.py", "--count", "2", "--json",
                          "--journal", pg_url, "--namespace", "job", "--data-dir", data,
                          timeout_s=240, check=False)
        if "No available agent" in job.stderr:  # the head's job agent is still starting
            return None
        assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
        return job

    job = poll(submit, timeout_s=120, every_s=2, what="the job agent to take the job")
    assert "succeeded" in job.stdout + job.stderr
    in_postgres = open_journal(pg_url, read_only=True).query()
    assert len(in_postgres) == 2 and {r.status.value for r in in_postgres} == {"COMPLETED"}
    assert {r.saga_id for r in in_postgres}.isdisjoint(ids)


# --- a worker node dies (journal and stores in PostgreSQL) ---------------------------


def assert_spread(by_node: dict[str, set[str]], *, nodes: int) -> None:
    """No node holds more than its fair share of participants, of hosts, or of buses."""
    for prefix in (PARTICIPANT_ACTOR_PREFIX, HOST_ACTOR_PREFIX, BUS_ACTOR_PREFIX):
        held = {n: sum(name.startswith(prefix) for name in names)
                for n, names in by_node.items()}
        assert max(held.values()) <= fair_share(sum(held.values()), nodes), (prefix, by_node)


FORWARD = {"inventory.reserve_inventory", "payment.process_payment", "shipping.create_shipment"}
STEP_PARTICIPANT = {"reserve_inventory": "inventory", "process_payment": "payment",
                    "create_shipment": "shipping"}


def launch(cluster, example, journal, namespace, data, *more: str) -> list[str]:
    out = cluster.run(sys.executable, "scripts/launch_sagas.py", example, *more, "--address",
                      cluster.address, "--no-wait", "--json", "--count", "6", "--journal",
                      journal, "--namespace", namespace, "--slow-step", "process_payment",
                      "--slow-s", "8", "--data-dir", data, SAGA_ACTORS_HOSTS="3")
    return [s["saga_id"] for s in json.loads(out.stdout)["sagas"]]


def test_a_worker_node_dies_mid_flight_and_every_saga_completes_once(
        cluster, pg_url, pg_database, tmp_path):
    namespace = f"nodeloss-{uuid.uuid4().hex[:8]}"
    data = str(tmp_path / "data")
    with ThreadPoolExecutor(2) as both:  # at once: both kinds of saga in flight together
        ids = [i for batch in both.map(lambda args: launch(cluster, *args), [
            ("order_fulfillment", pg_url, namespace, data, "--placement", "hosted"),
            ("order_choreography", pg_url, namespace, data)]) for i in batch]
    actors = cluster.actors(namespace)
    by_node: dict[str, set[str]] = {}
    for a in actors:
        by_node.setdefault(a["node_id"], set()).add(a["name"])
    # participants, hosts and buses are spread over the three nodes: none holds more than
    # its share of any kind (here: one of each, as there are three of each)
    assert_spread(by_node, nodes=3)
    assert set(by_node) >= {cluster.head_node, *cluster.worker_nodes}, by_node

    def kinds(node: str) -> int:  # runs a host or bus (a choreography's host), a participant
        names = by_node.get(node, set())
        return (any(n.startswith((HOST_ACTOR_PREFIX, BUS_ACTOR_PREFIX)) for n in names)
                + any(n.startswith(PARTICIPANT_ACTOR_PREFIX) for n in names))

    journal = open_journal(pg_url, read_only=True)
    candidates = [n for n in cluster.worker_nodes if kinds(n) == 2]
    assert candidates, by_node

    def depending_on(node: str) -> int:
        """Sagas in flight whose runner, or the participant of whose step, is on node."""
        names = by_node[node]
        return sum(1 for r in map(journal.load, ids) if r.in_flight and (
            runner_name(r, 3) in names
            or participant_actor_name(STEP_PARTICIPANT.get(r.current_step, "")) in names))

    def victim() -> str | None:  # the candidate worker that the most
        best = max(candidates, key=depending_on)  # sagas in flight depend on right now
        return best if depending_on(best) else None

    node = poll(victim, timeout_s=60, every_s=0.1, what="sagas in flight on a worker node")
    cluster.remove_worker(node)
    # an operator looks during the loss: `list` answers (from the journal if the
    # registry's node is the lost one), within its stated bound, with no traceback
    listed = cluster.run(str(BIN / "saga-actors"), "list", "--json", "--namespace", namespace,
                         timeout_s=60, check=False)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert {e["saga_id"] for e in json.loads(listed.stdout)} == set(ids)

    poll(lambda: all(journal.load(i).status.terminal for i in ids), timeout_s=180,
         every_s=0.5, what=f"{len(ids)} sagas terminal after the node loss")
    lost = {n for n in by_node[node] if not n.startswith("saga:")}

    def restarted_elsewhere():  # once Ray has seen the node die
        after = {a["name"]: a["node_id"] for a in cluster.actors(namespace)}
        return node not in after.values() and lost <= set(after)

    poll(restarted_elsewhere, timeout_s=90, every_s=1, what=f"{sorted(lost)} on other nodes")
    # `services` says where each runs now: still no node above its share, on the two left
    services = json.loads(cluster.run(str(BIN / "saga-actors"), "services", "--json",
                                      "--namespace", namespace).stdout)
    after: dict[str, set[str]] = {}
    for row in services:
        after.setdefault(row["node_id"], set()).add(row["name"])
    assert node not in after and lost <= {r["name"] for r in services}, services
    assert_spread(after, nodes=2)
    records = [journal.load(i) for i in ids]
    assert {r.status.value for r in records} == {"COMPLETED"}, [
        (r.saga_id, r.status.value, r.error) for r in records]

    prefix = pg_url.split("schema=")[1] + "_"
    with psycopg.connect(pg_database) as db:
        applied = Counter()
        for name in ("inventory", "payment", "shipping"):
            for saga_id, method, n in db.execute(
                    f"SELECT saga_id, method, COUNT(*) FROM {prefix}{name}.saga_effects "
                    "WHERE status = 'applied' GROUP BY saga_id, method"):
                applied[(saga_id, f"{name}.{method}")] += n
        charged = db.execute(f"SELECT SUM(amount_cents) FROM {prefix}payment.charges"
                             ).fetchone()[0]
        refunds = db.execute(f"SELECT COUNT(*) FROM {prefix}payment.refunds").fetchone()[0]
        stock = dict(db.execute(f"SELECT sku, qty FROM {prefix}inventory.stock"))
    for i in ids:  # every forward effect once; nothing compensated
        assert {m for (s, m) in applied if s == i} == FORWARD, i
    assert set(applied.values()) == {1}
    assert refunds == 0 and charged == sum(r.input["amount_cents"] for r in records)
    for sku, initial in DEFAULT_STOCK.items():
        ordered = sum(item["qty"] for r in records for item in r.input["items"]
                      if item["sku"] == sku)
        assert stock[sku] == initial - ordered, sku


# --- last: the whole cluster dies (a power cut) -------------------------------------------


def test_whole_cluster_restart_mid_flight(cluster, tmp_path):
    """The whole Ray cluster dies mid-flight; a new one with the same journal finishes
    every saga, each effect applied once. (Last in this module: it stops the cluster.)"""
    data = tmp_path / "data"
    journal = open_journal(f"sqlite:///{data}/journal.sqlite")
    try:
        out = cluster.run(sys.executable, "scripts/launch_sagas.py", "--address",
                          cluster.address, "--no-wait", "--count", "4", "--json",
                          "--namespace", "power-cut", "--slow-step", "process_payment",
                          "--slow-s", "30", "--data-dir", str(data))
        ids = [s["saga_id"] for s in json.loads(out.stdout)["sagas"]]

        def all_paying():
            recs = [journal.load(i) for i in ids]
            return all(r and r.current_step == "process_payment" and r.in_flight for r in recs)

        poll(all_paying, timeout_s=120, every_s=0.2, what="every saga mid-payment")
    finally:
        cluster.stop()  # power cut: every Ray process of that cluster is gone

    second = LocalCluster()
    try:
        out = second.start().run(sys.executable, "scripts/launch_sagas.py", "--address",
                         second.address, "--resume", "--json", "--data-dir", str(data),
                         "--namespace", "power-cut", "--timeout", "120")
    finally:
        second.stop()
    report = json.loads(out.stdout)
    assert sorted(s["saga_id"] for s in report["sagas"]) == sorted(ids)
    assert {s["status"] for s in report["sagas"]} == {"COMPLETED"}
    assert report["effects"] == {"inventory.reserve_inventory": 4,
                                 "payment.process_payment": 4,
                                 "shipping.create_shipment": 4}
    before, after = report["participants"]["before"], report["participants"]["after"]
    assert after["payment"]["charged_cents"] - before["payment"]["charged_cents"] == sum(
        journal.load(i).input["amount_cents"] for i in ids)
