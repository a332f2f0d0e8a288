"""Launch into a running cluster, let the driver exit, see everything from elsewhere."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from saga_actors.journal import open_journal
from tests.cluster import BIN, LocalCluster
from tests.conftest import poll


@pytest.fixture
def cluster():
    c = LocalCluster().start().add_worker()  # two nodes: the runtime pins to its files
    yield c
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
    # two nodes, SQLite files on this one: every saga_actors actor was pinned here
    where = json.loads(cluster.run(sys.executable, "-c", textwrap.dedent("""
        import json, ray
        from ray.util.state import list_actors
        ray.init(logging_level="ERROR")
        me = ray.get_runtime_context().get_node_id()
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        actors = list_actors(address=ray.get_runtime_context().gcs_address, limit=10_000,
                             filters=[("ray_namespace", "=", "saga_actors")])
        print(json.dumps({"nodes": len(nodes), "here": me,
                          "placed": sorted({a.node_id for a in actors if a.node_id})}))
    """)).stdout.strip().splitlines()[-1])
    assert where["nodes"] == 2 and where["placed"] == [where["here"]], where
    out = cluster.run(str(BIN / "saga-actors"), "list", "--json")  # another process sees them
    rows = {e["saga_id"]: e for e in json.loads(out.stdout)}
    assert set(rows) == ids and {e["status"] for e in rows.values()} == {"COMPLETED"}
    assert {"saga_id", "saga_type", "status", "current_step", "updated_at"} <= set(
        next(iter(rows.values())))

    second_driver = textwrap.dedent(f"""
        import json, os
        from saga_actors import SagaRuntime
        rt = SagaRuntime(address=os.environ["RAY_ADDRESS"], data_dir={data!r})
        print(json.dumps({{r.saga_id: r.status.value for r in rt.list()}}))
    """)
    seen = json.loads(cluster.run(sys.executable, "-c", second_driver).stdout)
    assert seen == {i: "COMPLETED" for i in ids}

    shown = json.loads(cluster.run(str(BIN / "saga-actors"), "show", sorted(ids)[0],
                                   "--json").stdout)
    assert [s["step"] for s in shown["steps"]] == [
        "reserve_inventory", "process_payment", "create_shipment"]

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
        assert job.returncode == 0, job.stderr[-3000:]
        return job

    job = poll(submit, timeout_s=120, every_s=2, what="the job agent to take the job")
    assert "succeeded" in job.stdout + job.stderr
    in_postgres = open_journal(pg_url, read_only=True).query()
    assert len(in_postgres) == 2 and {r.status.value for r in in_postgres} == {"COMPLETED"}
    assert {r.saga_id for r in in_postgres}.isdisjoint(ids)
    listed = json.loads(cluster.run(str(BIN / "saga-actors"), "list", "--json").stdout)
    assert len(listed) == 4  # the SQLite runtime's namespace saw none of the job's sagas
