"""The capacity model, run (`python scripts/bench.py --cluster`).

Two measurements, in ONE run:
  cluster  a local `ray start` cluster of 1, 2 and 3 nodes (a head of 2 CPUs, workers of
           2), the journal and the stores in PostgreSQL (new schemas, dropped after),
           hosts="auto" (one host and one bus per 2 CPUs) and two replicas of each
           participant: hosted throughput at 100 in flight, and per node how many sagas its
           hosts ran and how many requests each replica on it served. On one machine the
           nodes share its cores: the point is that the work spreads, not a speed-up.
  replicas_blocking  on a one-node cluster: a one-step saga whose participant waits 50 ms
           on a blocking client (`@action(blocking=True)`, one thread per replica, as a
           client library with one connection would have: 20 calls/s a replica at best), at
           100 in flight, with 1, 2 and 4 replicas (`rt.scale`).

Rows (JSON): {"name": "cluster", "nodes": N, "sagas_per_s": ..., "per_node": {node: {...}}}
and {"name": "replicas_blocking", "replicas": R, "sagas_per_s": ...}.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DRIVER = r'''
import asyncio, json, sys, time, uuid
import ray
sys.path.insert(0, ROOT)
from pydantic import BaseModel
from ray.util.state import list_actors
from scripts.bench import BENCH_PARTICIPANTS, BENCH_SAGA, drive
from saga_actors import Participant, Saga, SagaRuntime, StepContext, action, compensation
from saga_actors.participant.stores import stores_beside

class Call(BaseModel):
    order_id: str

class SlowClient(Participant):
    name = "slow_client"
    blocking_threads = 1  # a client library with one connection

    @action(blocking=True)
    def lookup(self, ctx: StepContext) -> dict:
        time.sleep(0.05)  # a blocking client's round trip
        return {"looked_up": ctx.data["order_id"]}

    @compensation("lookup")
    def forget(self, ctx: StepContext) -> dict:
        return {}

LOOKUP = Saga(name="bench_lookup", input_model=Call, steps=[
    {"name": "lookup", "participant": "slow_client", "compensation": "forget",
     "timeout_s": 60}])

def per_node(rt, ns):
    where = {a.name: a.node_id for a in list_actors(
        address=ray.get_runtime_context().gcs_address, limit=10_000,
        filters=[("ray_namespace", "=", ns), ("state", "=", "ALIVE")])}
    out = {}
    for i, host in enumerate(rt.hosts()):
        node = where.get(f"saga_actors:host:{i}", "?")[:8]
        out.setdefault(node, {"sagas_ran": 0, "requests_served": {}})
        out[node]["sagas_ran"] += ray.get(host.stats.remote())["ran"]
    for name, node in where.items():
        if name.startswith("participant:"):
            served = ray.get(ray.get_actor(name, ns).served.remote())["requests"]
            out.setdefault(node[:8], {"sagas_ran": 0, "requests_served": {}})
            out[node[:8]]["requests_served"][name.removeprefix("participant:")] = served
    return out

def runs(rt, saga_type, tag):
    async def one(i):  # (drive wants each saga's status)
        rec = await rt.execute(saga_type, {"order_id": f"{tag}{i}"}, placement="hosted")
        return rec.status.value
    return one

async def main():
    ns = f"benchc-{uuid.uuid4().hex[:6]}"
    url = f"{PG}{'&' if '?' in PG else '?'}schema={SCHEMA}"
    rt = SagaRuntime(sagas=[BENCH_SAGA, LOOKUP], namespace=ns, journal_url=url,
                     store_url=stores_beside(url), hosts="auto", log_level="WARNING",
                     participant_max_concurrency=20_000, data_dir=DATA)
    rows = []
    if MODE == "cluster":
        for cls in BENCH_PARTICIPANTS:
            rt.deploy(cls, replicas=2)
        await drive(runs(rt, "bench_order", "w"), 50, 50, "COMPLETED")  # warm
        elapsed, lat = await drive(runs(rt, "bench_order", "o"), N, 100, "COMPLETED")
        rows.append({"name": "cluster", "nodes": NODES, "sagas": N,
                     "sagas_per_s": round(N / elapsed, 1),
                     "hosts": len(rt.hosts()), "per_node": per_node(rt, ns)})
    else:
        rt.deploy(SlowClient, replicas=1)
        for replicas in (1, 2, 4):
            rt.scale("slow_client", replicas)
            tag = f"r{replicas}"
            await drive(runs(rt, "bench_lookup", f"{tag}w"), 20, 20, "COMPLETED")
            elapsed, lat = await drive(runs(rt, "bench_lookup", f"{tag}-"), N, 100,
                                       "COMPLETED")
            rows.append({"name": "replicas_blocking", "replicas": replicas, "sagas": N,
                         "sagas_per_s": round(N / elapsed, 1)})
    print("ROWS", json.dumps(rows), flush=True)
    rt.close()

asyncio.run(main())
'''


def say(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def run_on(nodes: int, mode: str, pg: str, n: int) -> list[dict[str, Any]]:
    """Start a cluster of ``nodes``, run the driver in it, stop the cluster."""
    import tempfile

    from scripts.bench import _drop_schema
    from tests.cluster import LocalCluster

    schema = f"benchc_{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster().start()
    try:
        for _ in range(nodes - 1):
            cluster.add_worker(num_cpus=2)
        code = "\n".join([f"ROOT = {str(ROOT)!r}", f"PG = {pg!r}", f"SCHEMA = {schema!r}",
                          f"MODE = {mode!r}", f"N = {n}", f"NODES = {nodes}",
                          f"DATA = {tempfile.mkdtemp(prefix='benchc-')!r}", DRIVER])
        began = time.monotonic()
        out = cluster.run(sys.executable, "-c", code, timeout_s=600)
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("ROWS "))
        rows = json.loads(line.removeprefix("ROWS "))
        say(f"  {mode} on {nodes} node(s): {rows} ({time.monotonic() - began:.0f}s)")
        return rows
    finally:
        cluster.stop()
        _drop_schema(pg, schema)  # (and its participants' schemas, <schema>_*)


def cluster_rows(pg: str, *, quick: bool) -> list[dict[str, Any]]:
    n = 200 if quick else 600
    rows: list[dict[str, Any]] = []
    say("cluster: hosted throughput at 100 in flight on 1, 2 and 3 nodes (PostgreSQL, "
        "hosts=auto, two replicas of each participant)")
    for nodes in (1, 2, 3):
        rows += run_on(nodes, "cluster", pg, n)
    say("replicas_blocking: a participant waiting 50 ms on a blocking client, 1, 2, 4 "
        "replicas")
    rows += run_on(1, "blocking", pg, 160 if quick else 320)
    return rows


def derived(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["replicas"]: r["sagas_per_s"] for r in rows if r["name"] == "replicas_blocking"}
    out: dict[str, Any] = {}
    if 1 in by and 4 in by:
        out["replicas_blocking_4_vs_1"] = round(by[4] / by[1], 2)
    return out
