"""Throughput, latency and memory of saga_actors beside its floors, in ONE process and run.

    python scripts/bench.py [--quick] [--json] [--scale N] [--markdown] [--postgres URL]
        [--console] [--cluster]

Rows, all on the same 3-step order saga (reserve_inventory, process_payment,
create_shipment), at several concurrencies:
  in_process  plain asyncio orchestrator, in-process participants; no Ray, no journal
  bare_ray    one orchestrator actor + 3 participant actors; no journal, no idempotency
  hosted      this runtime, `hosted` placement, SQLite journal (every transition durable),
              participants with their idempotency store
  dedicated   this runtime, one Ray actor per saga (slow by nature: fewer sagas)
  actor_per_saga_floor  bare Ray, a new actor per saga making the same three participant
              calls; no journal (the floor of `dedicated`: measured round by round with it)
  durable_floor  (one at a time) bare_ray plus the fsyncs a durable saga cannot skip, as
              many as a hosted saga makes (FLOOR_COMMITS, seven): the orchestrator commits
              one SQLite row (WAL, synchronous=FULL) at the start with the first call's
              send, before each other call and at the end, and each participant one per
              call; no idempotency logic, no validation (what `hosted` at 1 could at best be)
Mix "failing": the last step fails for good and the first two are compensated.
At 1,000 in flight, `bare_ray` and `hosted` also report `cpu_ms_per_saga`: the CPU each
process group (by title, the driver, the raylet and the GCS included) spent per saga.
  choreography  (at 100 in flight) the same steps as reactions on the event bus
  choreography_parallel  (at 100 in flight, same rounds) the first two steps as a fan-out
              on the start event, side by side, and the third as a join on both
"hosted_unbatched" (outside the rows): hosted at 100 in flight with batch_calls=False, one
Ray task per participant call, measured in the same rounds. "hosted_postgres" (with
--postgres URL): hosted at 100 in flight with the journal AND the participants' stores in
PostgreSQL (a schema each, dropped after the run), same rounds. "dbos_postgres" (with
--dbos PYTHON too): the same order as a DBOS workflow on that server, same run.
--console: hosted at 100 in flight with no console open and with 10 browser tabs on live
saga pages (scripts/bench_console.py), round by round.
--cluster: instead of the rows above, the capacity model on local `ray start` clusters of
1, 2 and 3 nodes (PostgreSQL, hosts="auto", two replicas per participant) and replicas
lifting a participant-bound saga (scripts/bench_cluster.py).
--scale N: N hosted sagas in flight at once, each waiting on a slow participant; reports
the host memory per in-flight saga.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402  (the test extra installs it)
import ray  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from saga_actors import (  # noqa: E402
    Choreography,
    NonRetryableError,
    Participant,
    Reaction,
    Saga,
    SagaRuntime,
    StepContext,
    action,
    compensation,
    configure_logging,
)
from saga_actors.participant.stores import stores_beside  # noqa: E402
from saga_actors.testing import Fault  # noqa: E402
from scripts.plots import bench_plot, require_matplotlib  # noqa: E402

STEPS = [("inventory", "reserve_inventory", "release_inventory"),
         ("payment", "process_payment", "refund_payment"),
         ("shipping", "create_shipment", "cancel_shipment")]


# --- floor 1: in-process --------------------------------------------------------------


class InProcessParticipant:
    async def call(self, method: str, payload: dict) -> dict:
        if payload.get("fail") and method == "create_shipment":
            raise RuntimeError("declined")
        return {method: payload["order_id"]}


async def in_process_saga(parts: dict, order_id: str, fail: bool) -> str:
    done = []
    payload = {"order_id": order_id, "fail": fail}
    for participant, act, comp in STEPS:
        try:
            payload.update(await parts[participant].call(act, payload))
            done.append((participant, comp))
        except RuntimeError:
            for p, c in reversed(done):
                await parts[p].call(c, payload)
            return "FAILED"
    return "COMPLETED"


# --- floor 2: bare Ray ----------------------------------------------------------------


@ray.remote(num_cpus=0, max_concurrency=10_000)
class BareParticipant(InProcessParticipant):
    pass


@ray.remote(num_cpus=0, max_concurrency=10_000)
class BareOrchestrator:
    def __init__(self, parts: dict) -> None:
        self.parts = parts

    async def run(self, order_id: str, fail: bool) -> str:
        done = []
        payload = {"order_id": order_id, "fail": fail}
        for participant, act, comp in STEPS:
            try:
                payload.update(await self.parts[participant].call.remote(act, payload))
                done.append((participant, comp))
            except ray.exceptions.RayTaskError:
                for p, c in reversed(done):
                    await self.parts[p].call.remote(c, payload)
                return "FAILED"
        return "COMPLETED"


@ray.remote(num_cpus=0)
class SagaFloor:
    """One bare actor per saga: the floor of `dedicated` (the same calls, no journal)."""

    def __init__(self, parts: dict) -> None:
        self.parts = parts

    async def run(self, order_id: str) -> str:
        payload = {"order_id": order_id, "fail": False}
        for participant, act, _ in STEPS:
            payload.update(await self.parts[participant].call.remote(act, payload))
        return "COMPLETED"


# the fsynced commits durable_floor models per saga, as a hosted saga makes them: its start
# with the first send, each other send with the step before's success, the end with the
# last success; one per participant call
FLOOR_COMMITS = {"runner": 4, "participants": 3}


class _Fsynced:
    """One SQLite file (WAL, synchronous=FULL) where each ``commit`` is one durable row."""

    def __init__(self, path: str) -> None:
        import sqlite3

        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value TEXT)")

    def commit(self, key: str, value: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?)", (key, value))
        self.db.execute("COMMIT")


@ray.remote(num_cpus=0, max_concurrency=10_000)
class DurableParticipant(InProcessParticipant):
    def __init__(self, path: str) -> None:
        self.store = _Fsynced(path)

    async def call(self, method: str, payload: dict) -> dict:
        self.store.commit(f"{payload['order_id']}/{method}", "applied")
        return await super().call(method, payload)


@ray.remote(num_cpus=0, max_concurrency=10_000)
class DurableOrchestrator:
    """bare_ray's orchestrator with a journal row committed at the start with the first
    call's send, before each other call and at the end (the same four commits a hosted
    saga's runner makes, and nothing else; FLOOR_COMMITS)."""

    def __init__(self, parts: dict, path: str) -> None:
        self.parts = parts
        self.journal = _Fsynced(path)

    async def run(self, order_id: str) -> str:
        payload = {"order_id": order_id, "fail": False}
        for k, (participant, act, _) in enumerate(STEPS):
            self.journal.commit(order_id, f"started, {act} sent" if k == 0 else f"{act} sent")
            payload.update(await self.parts[participant].call.remote(act, payload))
        self.journal.commit(order_id, "completed")
        return "COMPLETED"


async def actor_per_saga(parts: dict, order_id: str) -> str:
    actor = SagaFloor.remote(parts)
    try:
        return await actor.run.remote(order_id)
    finally:
        ray.kill(actor)  # its process ends, as a dedicated saga's does


# --- this runtime ---------------------------------------------------------------------


class BenchInput(BaseModel):
    order_id: str
    fail: bool = False


def _participant(pname: str, act: str, comp: str) -> type[Participant]:
    def do(self, ctx: StepContext) -> dict:
        if ctx.data.get("fail") and act == "create_shipment":
            raise NonRetryableError("declined")
        return {act: ctx.data["order_id"]}

    def undo(self, ctx: StepContext) -> dict:
        return {}

    do.__name__, undo.__name__ = act, comp
    attrs = {"name": f"bench_{pname}", act: action(do), comp: compensation(act)(undo)}
    return type(f"Bench{pname.title()}", (Participant,), attrs)


BENCH_PARTICIPANTS = [_participant(*s) for s in STEPS]
BENCH_SAGA = Saga(
    name="bench_order",
    input_model=BenchInput,
    steps=[{"name": act, "participant": f"bench_{p}", "compensation": comp, "timeout_s": 60}
           for p, act, comp in STEPS],
)


def _bench_choreography() -> Choreography:
    """The same three steps as a choreography: each participant reacts to the event the
    one before published; a failing last step refunds and releases through events."""
    names = ["Started", "Step1Done", "Step2Done", "Done", "Step1Failed", "Step2Failed",
             "Step3Failed", "Step2Undone", "Undone"]
    models = {n: type(n, (BenchInput,), {"__module__": __name__}) for n in names}
    (p1, a1, c1), (p2, a2, c2), (p3, a3, _) = STEPS
    return Choreography(
        name="bench_choreography", events=tuple(models.values()), start="Started",
        reactions=(
            Reaction(on="Started", participant=f"bench_{p1}", handler=a1, timeout_s=60,
                     publishes="Step1Done", failure="Step1Failed"),
            Reaction(on="Step1Done", participant=f"bench_{p2}", handler=a2, timeout_s=60,
                     publishes="Step2Done", failure="Step2Failed"),
            Reaction(on="Step2Done", participant=f"bench_{p3}", handler=a3, timeout_s=60,
                     publishes="Done", failure="Step3Failed"),
            Reaction(name="undo1", on="Step2Failed", participant=f"bench_{p1}", handler=c1,
                     compensates=a1, publishes="Undone"),
            Reaction(name="undo2", on="Step3Failed", participant=f"bench_{p2}", handler=c2,
                     compensates=a2, publishes="Step2Undone"),
            Reaction(name="undo1_after_2", on="Step2Undone", participant=f"bench_{p1}",
                     handler=c1, compensates=a1, publishes="Undone"),
        ),
        completes_on=("Done",), fails_on=("Undone", "Step1Failed"))


BENCH_CHOREOGRAPHY = _bench_choreography()


def _bench_choreography_parallel() -> Choreography:
    """The first two steps side by side (a fan-out on the start event), the third a join
    on both; whatever fails undoes what completed."""
    names = ["Started", "Step1Done", "Step2Done", "Done", "Step1Failed", "Step2Failed",
             "Step3Failed", "Undone"]
    models = {n: type(n, (BenchInput,), {"__module__": __name__}) for n in names}
    (p1, a1, c1), (p2, a2, c2), (p3, a3, _) = STEPS

    def undo(n: int, on: str) -> Reaction:
        p, a, c = STEPS[n - 1]
        return Reaction(name=f"undo{n}_after_{on}", on=on, participant=f"bench_{p}",
                        handler=c, compensates=a, publishes="Undone", timeout_s=60)

    return Choreography(
        name="bench_choreography_parallel", events=tuple(models.values()), start="Started",
        reactions=(
            Reaction(on="Started", participant=f"bench_{p1}", handler=a1, timeout_s=60,
                     publishes="Step1Done", failure="Step1Failed"),
            Reaction(on="Started", participant=f"bench_{p2}", handler=a2, timeout_s=60,
                     publishes="Step2Done", failure="Step2Failed"),
            Reaction(on_all=("Step1Done", "Step2Done"), participant=f"bench_{p3}",
                     handler=a3, timeout_s=60, publishes="Done", failure="Step3Failed"),
            undo(2, "Step1Failed"), undo(1, "Step2Failed"),
            undo(1, "Step3Failed"), undo(2, "Step3Failed"),
        ),
        completes_on=("Done",), fails_on=("Undone",))


BENCH_CHOREOGRAPHY_PARALLEL = _bench_choreography_parallel()


# --- measuring ------------------------------------------------------------------------


class RssSampler:
    """Peak summed RSS of the driver and every Ray worker process, sampled in a thread."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.peak = 0
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        total = psutil.Process().memory_info().rss
        for proc in psutil.process_iter(["name", "memory_info"]):
            name = proc.info["name"] or ""
            if name.startswith("ray::") and proc.info["memory_info"]:
                total += proc.info["memory_info"].rss
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class CpuMeter:
    """CPU time (user + system) that the driver and each Ray process spent while it was
    open, grouped by process title (``ray::SagaHostImpl``, ``ray::BenchPayment``...,
    ``raylet``, ``gcs_server``)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    @staticmethod
    def _snapshot() -> dict[int, tuple[str, float]]:
        out = {}
        me = psutil.Process()
        times = me.cpu_times()
        out[me.pid] = ("driver", times.user + times.system)
        for proc in psutil.process_iter(["name", "cpu_times"]):
            name = proc.info["name"] or ""
            if (name.startswith("ray::") or name in ("raylet", "gcs_server")) and \
                    proc.info["cpu_times"]:
                t = proc.info["cpu_times"]
                out[proc.pid] = (name.split(".")[0], t.user + t.system)
        return out

    def __enter__(self) -> CpuMeter:
        self._before = self._snapshot()
        return self

    def __exit__(self, *exc: Any) -> None:
        for pid, (name, cpu) in self._snapshot().items():
            start = self._before.get(pid, (name, 0.0))[1]  # (a process started meanwhile)
            self.spent[name] = self.spent.get(name, 0.0) + max(0.0, cpu - start)

    def per_saga_ms(self, sagas: int) -> dict[str, float]:
        """CPU-ms per saga of each process group, busiest first, and their total."""
        out = {k: round(v * 1000 / sagas, 3) for k, v in
               sorted(self.spent.items(), key=lambda kv: -kv[1]) if v > 0}
        out["total"] = round(sum(self.spent.values()) * 1000 / sagas, 3)
        return out


async def drive(one: Callable[[int], Awaitable[str]], n: int, concurrency: int,
                expect: str) -> tuple[float, list[float]]:
    """Run ``n`` sagas with ``concurrency`` in flight; seconds taken and latencies."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def run(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            status = await one(i)
            latencies.append(time.perf_counter() - t)
            if status != expect:
                raise RuntimeError(f"saga {i} ended {status}, expected {expect}")

    start = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(n)))
    return time.perf_counter() - start, latencies


def row(name: str, concurrency: int, mix: str, n: int, elapsed: float, lat: list[float],
        peak: int) -> dict[str, Any]:
    # percentiles 1..99 ("inclusive": the 99th lies within the samples, also for 3 of them)
    cuts = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return {"name": name, "concurrency": concurrency, "mix": mix, "sagas": n,
            "sagas_per_s": round(n / elapsed, 1), "p50_ms": round(cuts[49] * 1e3, 2),
            "p99_ms": round(cuts[98] * 1e3, 2), "peak_rss_mb": round(peak / 2**20, 1)}


def say(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


async def measure(name: str, one, n: int, concurrency: int, mix: str,
                  rounds: int = 1) -> dict[str, Any]:
    """The median of ``rounds`` runs (by sagas/s); peak memory over all of them."""
    expect = "FAILED" if mix == "failing" else "COMPLETED"
    results = []
    peak = 0
    for _ in range(rounds):
        with RssSampler() as rss:
            elapsed, lat = await drive(one, n, concurrency, expect)
        peak = max(peak, rss.peak)
        results.append(row(name, concurrency, mix, n, elapsed, lat, 0))
    r = sorted(results, key=lambda x: x["sagas_per_s"])[len(results) // 2]
    r["peak_rss_mb"] = round(peak / 2**20, 1)
    r["rounds"] = [x["sagas_per_s"] for x in results]
    say(f"  {name:<16} c={concurrency:<5} {mix:<8} {n:>6} sagas  {r['sagas_per_s']:>8} /s  "
        f"p50 {r['p50_ms']:>8} ms  p99 {r['p99_ms']:>8} ms  peak {r['peak_rss_mb']} MB  "
        f"rounds {r['rounds']}")
    return r


# --- the run --------------------------------------------------------------------------


async def bench(args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    quick = args.quick
    sizes = {1: 60 if quick else 200, 100: 400 if quick else 3000, 1000: 1000 if quick else 6000}
    fail_n = 200 if quick else 1500
    rounds = 3  # bare_ray and hosted alternate, so both see the same machine
    rows: list[dict[str, Any]] = []

    say("in_process (no Ray, no journal)")
    parts = {p: InProcessParticipant() for p, _, _ in STEPS}
    for c, n in sizes.items():
        rows.append(await measure("in_process", lambda i: in_process_saga(parts, f"o{i}", False),
                                  n, c, "success"))
    rows.append(await measure("in_process", lambda i: in_process_saga(parts, f"o{i}", True),
                              fail_n, 100, "failing"))

    bare_parts = {p: BareParticipant.remote() for p, _, _ in STEPS}
    orch = BareOrchestrator.remote(bare_parts)
    await orch.run.remote("warm", False)
    durable_parts = {p: DurableParticipant.remote(f"{data_dir}/durable_{p}.sqlite")
                     for p, _, _ in STEPS}
    durable = DurableOrchestrator.remote(durable_parts, f"{data_dir}/durable_journal.sqlite")
    await durable.run.remote("warm")
    rt = _runtime(data_dir, "saga_actors_bench")
    # the same runtime with one Ray task per participant call (batch_calls=False), for the
    # record: how much of hosted's speed is batching
    unbatched = _runtime(str(Path(data_dir) / "unbatched"), "saga_actors_bench_unbatched",
                         batch_calls=False)

    async def runtime_saga(i: int, placement: str, fail: bool, on: SagaRuntime = rt) -> str:
        if placement in ("choreography", "choreography_parallel"):
            rec = await on.execute(f"bench_{placement}", {"order_id": f"c{i}", "fail": fail})
        else:
            rec = await on.execute("bench_order", {"order_id": f"o{i}", "fail": fail},
                                   placement=placement)
        return rec.status.value

    await runtime_saga(-1, "hosted", False)  # warm: hosts up, definitions registered
    await runtime_saga(-1, "choreography", False)  # and the buses
    await runtime_saga(-1, "choreography_parallel", False)
    await runtime_saga(-1, "hosted", False, unbatched)
    # the same runtime with its journal and stores in PostgreSQL (--postgres URL)
    pg = None
    if args.postgres:
        schema = f"bench_{int(time.time())}"
        sep = "&" if "?" in args.postgres else "?"
        pg_url = f"{args.postgres}{sep}schema={schema}"
        pg = _runtime(str(Path(data_dir) / "pg"), "saga_actors_bench_pg", journal_url=pg_url,
                      store_url=stores_beside(pg_url))
        await runtime_saga(-1, "hosted", False, pg)

    say("bare_ray (orchestrator actor + 3 participant actors, no journal) and hosted "
        "(this runtime, SQLite journal, durable), round by round")
    pairs = [(c, n, "success") for c, n in sizes.items()] + [(100, fail_n, "failing")]
    unbatched_runs, choreography_runs, pg_runs, durable_runs = [], [], [], []
    parallel_runs: list[dict[str, Any]] = []
    pg_work: list[tuple[int, dict, dict]] = []  # sagas, server counters before and after
    for c, n, mix in pairs:
        fail = mix == "failing"
        bare_runs, hosted_runs = [], []
        cpu = {"bare_ray": CpuMeter(), "hosted": CpuMeter()}  # (at 1,000 in flight)
        for _ in range(rounds):
            with cpu["bare_ray"]:
                bare_runs.append(await measure(
                    "bare_ray", lambda i, fail=fail: orch.run.remote(f"o{i}", fail), n, c,
                    mix))
            with cpu["hosted"]:
                hosted_runs.append(await measure(
                    "hosted", lambda i, fail=fail: runtime_saga(i, "hosted", fail), n, c,
                    mix))
            if c == 1:
                tag = f"d{len(durable_runs)}"  # each round's orders are new ones
                durable_runs.append(await measure(
                    "durable_floor", lambda i, tag=tag: durable.run.remote(f"{tag}-{i}"),
                    n, c, mix))
            if (c, mix) == (100, "success"):
                unbatched_runs.append(await measure(
                    "hosted_unbatched", lambda i: runtime_saga(i, "hosted", False, unbatched),
                    n, c, mix))
                choreography_runs.append(await measure(
                    "choreography", lambda i: runtime_saga(i, "choreography", False), n, c,
                    mix))
                parallel_runs.append(await measure(
                    "choreography_parallel",
                    lambda i: runtime_saga(i, "choreography_parallel", False), n, c, mix))
                if pg is not None:
                    before = _pg_counters(args.postgres)
                    pg_runs.append(await measure(
                        "hosted_postgres", lambda i: runtime_saga(i, "hosted", False, pg),
                        n, c, mix))
                    pg_work.append((n, before, _pg_counters(args.postgres, settle=True)))
        rows += [_median(bare_runs), _median(hosted_runs)]
        if c == 1000:  # what a saga costs each process at load, all rounds
            for r, name in ((rows[-2], "bare_ray"), (rows[-1], "hosted")):
                r["cpu_ms_per_saga"] = cpu[name].per_saga_ms(n * rounds)
        if c == 1:
            rows.append(_median(durable_runs))
        if (c, mix) == (100, "success"):
            rows += [_median(choreography_runs), _median(parallel_runs)]
    for actor in [orch, *bare_parts.values(), durable, *durable_parts.values()]:
        ray.kill(actor)
    unbatched.close()
    if pg is not None:
        pg.close()
        _drop_schema(args.postgres, schema)
    dbos = _dbos_rows(args, sizes[1], sizes[100]) if args.dbos else None
    sent = [await h.stats.remote() for h in rt.hosts()]
    batching = {"participant_requests": sum(s["requests"] for s in sent),
                "ray_calls": sum(s["ray_calls"] for s in sent)}

    say("dedicated (one Ray actor per saga) and its floor (a bare actor per saga), round "
        "by round")
    floor_parts = {p: BareParticipant.remote() for p, _, _ in STEPS}
    await actor_per_saga(floor_parts, "warm")
    for c, n in ({1: 3, 10: 20} if quick else {1: 20, 10: 60, 50: 150}).items():
        floor_runs, dedicated_runs = [], []
        for _ in range(2 if quick else rounds):
            floor_runs.append(await measure(
                "actor_per_saga_floor", lambda i: actor_per_saga(floor_parts, f"f{i}"), n, c,
                "success"))
            dedicated_runs.append(await measure(
                "dedicated", lambda i: runtime_saga(i, "dedicated", False), n, c, "success"))
        rows += [_median(floor_runs), _median(dedicated_runs)]
    for actor in floor_parts.values():
        ray.kill(actor)

    console = None
    if args.console:
        from scripts.bench_console import console_rows

        say("hosted at 100 in flight with no console open, and with browser tabs on live "
            "saga pages, round by round (a runtime of their own that never recycles its "
            "processes: a recycle's pause would land in one round and not the other)")
        steady = _runtime(str(Path(data_dir) / "console"), "saga_actors_bench_console",
                          recycle_after_tasks=0)
        await runtime_saga(-1, "hosted", False, steady)
        console = await console_rows(
            steady, lambda i: runtime_saga(i, "hosted", False, steady), measure, _median,
            n=max(sizes[100], 1200), rounds=5, say=say)  # ~5 s a round
        steady.close()

    scale = None
    if args.scale:
        scale = await scale_test(rt, args.scale)
    rt.close()
    out = derived(rows)
    hosted_unbatched = _median(unbatched_runs)
    bare = next(r for r in rows if (r["name"], r["concurrency"], r["mix"]) ==
                ("bare_ray", 100, "success"))
    out["hosted_unbatched_vs_bare_ray_at_100"] = round(
        hosted_unbatched["sagas_per_s"] / bare["sagas_per_s"], 3)
    out["requests_per_ray_call_hosted"] = round(
        batching["participant_requests"] / max(1, batching["ray_calls"]), 2)
    hosted_postgres = _median(pg_runs) if pg_runs else None
    if hosted_postgres:
        hosted = next(r for r in rows if (r["name"], r["concurrency"], r["mix"]) ==
                      ("hosted", 100, "success"))
        out["hosted_postgres_vs_hosted_sqlite_at_100"] = round(
            hosted_postgres["sagas_per_s"] / hosted["sagas_per_s"], 3)
        sagas = sum(n for n, _, _ in pg_work)
        for key in ("xact_commit", "wal_sync", "cpu_ms", "participants_cpu_ms", "ray_cpu_ms"):
            spent = sum(after[key] - before[key] for _, before, after in pg_work)
            out[f"postgres_{key}_per_saga"] = round(spent / sagas, 2)
    if dbos:
        out["hosted_postgres_vs_dbos_postgres_at_100"] = round(
            hosted_postgres["sagas_per_s"] / dbos[1]["sagas_per_s"], 3)
    if console:
        out["console_open_vs_closed_at_100"] = console["ratio"]
    return {"rows": rows, "scale": scale, "derived": out, "hosted_unbatched": hosted_unbatched,
            "console": console,
            "hosted_postgres": hosted_postgres, "dbos_postgres": dbos}


def _dbos_rows(args: argparse.Namespace, n1: int, n100: int) -> list[dict[str, Any]]:
    """DBOS on the same PostgreSQL server, the same 3-step order (scripts/bench_dbos.py,
    run by the interpreter that has DBOS), in two databases made and dropped here."""
    import subprocess

    import psycopg

    from saga_actors.journal.postgres import split_url

    name = f"bench_dbos_{int(time.time())}"
    server = split_url(args.postgres)[0]
    with psycopg.connect(server, autocommit=True) as db:
        for database in (name, f"{name}_sys"):
            db.execute(f'CREATE DATABASE "{database}"')
    base = args.postgres.split("?")[0].rsplit("/", 1)[0]
    say("dbos_postgres (DBOS workflow, steps writing to PostgreSQL)")
    try:
        done = subprocess.run([args.dbos, str(Path(__file__).with_name("bench_dbos.py")),
                               f"{base}/{name}", str(n1), str(n100)],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"bench_dbos.py failed: {done.stderr[-2000:]}")
        rows = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(server, autocommit=True) as db:
            for database in (name, f"{name}_sys"):
                db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    for r in rows:
        say(f"  {r['name']:<16} c={r['concurrency']:<5} {r['sagas']:>6} sagas  "
            f"{r['sagas_per_s']:>8} /s  p50 {r['p50_ms']:>8} ms")
    return rows


def _pg_counters(url: str, settle: bool = False) -> dict[str, int]:
    """The server's transactions committed in this database and its WAL flushes so far
    (``settle``: after the backends' statistics have been flushed, about 1 s)."""
    import psycopg

    from saga_actors.journal.postgres import split_url

    if settle:
        time.sleep(1.5)
    with psycopg.connect(split_url(url)[0], autocommit=True) as db:
        db.execute("SELECT pg_stat_clear_snapshot()")
        commits = db.execute("SELECT xact_commit FROM pg_stat_database "
                             "WHERE datname = current_database()").fetchone()[0]
        syncs = db.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0]
    me = psutil.Process().cpu_times()
    return {"xact_commit": int(commits), "wal_sync": int(syncs), "cpu_ms": _cpu_ms("postgres"),
            "participants_cpu_ms": _cpu_ms("ray::Bench"),
            "ray_cpu_ms": _cpu_ms("ray::") + int((me.user + me.system) * 1000)}


def _cpu_ms(prefix: str) -> int:
    """CPU milliseconds used so far by this machine's processes named ``prefix...`` (the
    PostgreSQL server, when it runs here; the bench's participant actors)."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = proc.info["name"] or ""
            cmd = (proc.info["cmdline"] or [""])[0]
            if name.startswith(prefix) or cmd.startswith(prefix):
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return int(total * 1000)


def _drop_schema(url: str, schema: str) -> None:
    """The bench's journal schema and its participants' store schemas (``<schema>_*``),
    gone after the run (the database stays as it was)."""
    import psycopg

    from saga_actors.journal.postgres import split_url

    with psycopg.connect(split_url(url)[0], autocommit=True) as db:
        names = [r[0] for r in db.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
            (schema, f"{schema}\\_%"))]
        for name in names:
            db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _runtime(data_dir: str, namespace: str, **settings: Any) -> SagaRuntime:
    rt = SagaRuntime(sagas=[BENCH_SAGA, BENCH_CHOREOGRAPHY, BENCH_CHOREOGRAPHY_PARALLEL],
                     data_dir=data_dir, namespace=namespace,
                     log_level="WARNING", participant_max_concurrency=20_000, **settings)
    rt.deploy_many(BENCH_PARTICIPANTS)
    return rt


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["sagas_per_s"])
    out = dict(ordered[len(ordered) // 2])
    out["rounds"] = [r["sagas_per_s"] for r in runs]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return out


async def scale_test(rt: SagaRuntime, n: int, hold_s: float = 30.0) -> dict[str, Any]:
    """``n`` hosted sagas in flight at once, each held at a slow payment."""
    say(f"scale: {n} hosted sagas in flight at once")
    hosts = rt.hosts()
    stats = await asyncio.gather(*(h.stats.remote() for h in hosts))
    before = {s["host"]: _rss_of(s["pid"]) for s in stats}
    payment = ray.get_actor("participant:bench_payment", rt.config.namespace)
    await payment.set_faults.remote({"process_payment": Fault(delay_s=hold_s)})
    start = time.perf_counter()
    ids = rt.start_many("bench_order", [{"order_id": f"s{i}"} for i in range(n)],
                        placement="hosted")
    say(f"  {time.perf_counter() - start:5.1f}s  {len(ids)} journaled and started")
    peak_host = 0
    in_flight = 0
    while time.perf_counter() - start < hold_s * 2:
        stats = await asyncio.gather(*(h.stats.remote() for h in hosts))
        in_flight = sum(s["running"] for s in stats)
        peak_host = max(peak_host, sum(_rss_of(s["pid"]) for s in stats))
        say(f"  {time.perf_counter() - start:5.1f}s  running {in_flight}")
        if in_flight == n:
            await asyncio.sleep(2)  # all in flight: one more reading at the plateau
            stats = await asyncio.gather(*(h.stats.remote() for h in hosts))
            peak_host = max(peak_host, sum(_rss_of(s["pid"]) for s in stats))
            break
        await asyncio.sleep(1.0)
    max_in_flight = in_flight
    await payment.set_faults.remote({})
    records = await asyncio.to_thread(rt.wait_all, ids, timeout_s=600)
    statuses = [r.status.value for r in records]
    elapsed = time.perf_counter() - start
    grown = peak_host - sum(before.values())
    result = {"sagas": n, "max_in_flight": max_in_flight,
              "completed": sum(s == "COMPLETED" for s in statuses),
              "seconds": round(elapsed, 1),
              "host_rss_before_mb": round(sum(before.values()) / 2**20, 1),
              "host_rss_peak_mb": round(peak_host / 2**20, 1),
              "kb_per_in_flight_saga": round(grown / max(max_in_flight, 1) / 1024, 1)}
    say(f"  {result}")
    return result


def _rss_of(pid: int) -> int:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def derived(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def get(name: str, c: int, mix: str = "success") -> dict[str, Any] | None:
        return next((r for r in rows if (r["name"], r["concurrency"], r["mix"]) == (name, c, mix)),
                    None)

    out: dict[str, Any] = {}
    hosted, bare = get("hosted", 100), get("bare_ray", 100)
    if hosted and bare:
        out["hosted_vs_bare_ray_at_100"] = round(hosted["sagas_per_s"] / bare["sagas_per_s"], 3)
    h1000, b1000 = get("hosted", 1000), get("bare_ray", 1000)
    if h1000 and b1000:
        out["hosted_vs_bare_ray_at_1000"] = round(h1000["sagas_per_s"] / b1000["sagas_per_s"], 3)
        for r, name in ((h1000, "hosted"), (b1000, "bare_ray")):
            if r.get("cpu_ms_per_saga"):
                out[f"{name}_cpu_ms_per_saga_at_1000"] = r["cpu_ms_per_saga"]
    chor = get("choreography", 100)
    if chor and hosted:
        out["choreography_vs_hosted_at_100"] = round(
            chor["sagas_per_s"] / hosted["sagas_per_s"], 3)
    par = get("choreography_parallel", 100)
    if par and chor:
        out["choreography_parallel_vs_choreography_at_100"] = round(
            par["sagas_per_s"] / chor["sagas_per_s"], 3)
    h1, b1 = get("hosted", 1), get("bare_ray", 1)
    if h1 and b1:
        out["overhead_per_step_ms_at_1"] = round((h1["p50_ms"] - b1["p50_ms"]) / len(STEPS), 3)
        out["hosted_p50_vs_bare_ray_p50_at_1"] = round(h1["p50_ms"] / b1["p50_ms"], 3)
        d1 = get("durable_floor", 1)
        if d1:
            out["durable_floor_p50_vs_bare_ray_p50_at_1"] = round(d1["p50_ms"] / b1["p50_ms"], 3)
            out["durable_floor_commits"] = FLOOR_COMMITS
            out["hosted_p50_vs_durable_floor_p50_at_1"] = round(h1["p50_ms"] / d1["p50_ms"], 3)
    d10, f10 = get("dedicated", 10), get("actor_per_saga_floor", 10)
    if d10 and f10:
        out["dedicated_vs_actor_per_saga_floor_at_10"] = round(
            d10["sagas_per_s"] / f10["sagas_per_s"], 3)
    return out


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "ray": ray.__version__,
            "cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "processor": platform.processor() or "unknown"}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"Measured on {m['cpus']} CPUs, {m['memory_gb']} GiB, Python {m['python']}, "
             f"Ray {m['ray']} ({m['platform']}).", "",
             "| row | concurrency | mix | sagas | sagas/s | p50 ms | p99 ms | peak RSS MB |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["rows"]:
        lines.append(f"| {r['name']} | {r['concurrency']} | {r['mix']} | {r['sagas']} | "
                     f"{r['sagas_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['peak_rss_mb']} |")
    d, u = report["derived"], report.get("hosted_unbatched")
    lines += ["", (f"hosted / bare_ray at 100 in flight: **{d.get('hosted_vs_bare_ray_at_100')}**"
                   f" ({d.get('requests_per_ray_call_hosted')} participant requests per Ray "
                   "call).")]
    if d.get("hosted_p50_vs_durable_floor_p50_at_1") is not None:
        lines.append(f"One at a time, p50: hosted / bare_ray "
                     f"**{d['hosted_p50_vs_bare_ray_p50_at_1']}**"
                     f"; durable_floor / bare_ray {d['durable_floor_p50_vs_bare_ray_p50_at_1']} "
                     f"(bare_ray plus the same {sum(FLOOR_COMMITS.values())} fsynced commits, "
                     "nothing else); hosted / "
                     f"durable_floor {d['hosted_p50_vs_durable_floor_p50_at_1']}.")
    if d.get("hosted_vs_bare_ray_at_1000") is not None:
        cpu = d.get("hosted_cpu_ms_per_saga_at_1000") or {}
        bare = d.get("bare_ray_cpu_ms_per_saga_at_1000") or {}
        lines.append(f"hosted / bare_ray at 1,000 in flight: **{d['hosted_vs_bare_ray_at_1000']}**"
                     f"; CPU-ms per saga there, hosted {cpu.get('total')} ("
                     + ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "total")
                     + f"), bare_ray {bare.get('total')}.")
    if d.get("choreography_vs_hosted_at_100") is not None:
        lines.append(f"choreography / hosted at 100 in flight, same rounds: "
                     f"**{d['choreography_vs_hosted_at_100']}**.")
    if d.get("choreography_parallel_vs_choreography_at_100") is not None:
        lines.append(f"choreography_parallel (two branches, a join) / choreography at 100 in "
                     f"flight, same rounds: "
                     f"**{d['choreography_parallel_vs_choreography_at_100']}**.")
    if u:
        lines.append(f"With `batch_calls=False` (one Ray task per call), same rounds: "
                     f"{u['sagas_per_s']} sagas/s, p50 {u['p50_ms']} ms: "
                     f"{d.get('hosted_unbatched_vs_bare_ray_at_100')} of bare_ray.")
    pgr = report.get("hosted_postgres")
    if pgr:
        lines.append(f"`hosted` with the journal and the participants' stores in PostgreSQL, "
                     f"same rounds: {pgr['sagas_per_s']} sagas/s, p50 {pgr['p50_ms']} ms: "
                     f"{d.get('hosted_postgres_vs_hosted_sqlite_at_100')} of `hosted` on "
                     f"SQLite; per saga the server committed "
                     f"{d.get('postgres_xact_commit_per_saga')} transactions and flushed its "
                     f"WAL {d.get('postgres_wal_sync_per_saga')} times, and used "
                     f"{d.get('postgres_cpu_ms_per_saga')} ms of CPU; the Ray processes "
                     f"(driver included) {d.get('postgres_ray_cpu_ms_per_saga')} ms, the "
                     f"participants {d.get('postgres_participants_cpu_ms_per_saga')} of it.")
    dbos = report.get("dbos_postgres")
    if dbos:
        one, busy = dbos
        lines.append(f"DBOS on the same PostgreSQL server, same run (scripts/bench_dbos.py): "
                     f"{busy['sagas_per_s']} sagas/s at 100 in flight (`hosted` on "
                     f"PostgreSQL: **{d.get('hosted_postgres_vs_dbos_postgres_at_100')}x** "
                     f"that), p50 {one['p50_ms']} ms one at a time.")
    con = report.get("console")
    if con:
        lines.append(f"With the console open ({con['tabs']} browser tabs on live saga pages), "
                     f"same rounds: {con['open']['sagas_per_s']} sagas/s at 100 in flight "
                     f"against {con['closed']['sagas_per_s']} with none open: "
                     f"**{con['ratio']}**; while measuring ({con['measured_s']} s) the browser "
                     f"used {con['browser_cpu_s']} CPU-s and the console "
                     f"{con['console_cpu_s']}.")
    if report.get("scale"):
        sc = report["scale"]
        lines.append(f"Scale: {sc['sagas']} hosted sagas in flight at once ({sc['max_in_flight']} "
                     f"seen running), {sc['completed']} completed in {sc['seconds']} s, "
                     f"{sc['kb_per_in_flight_saga']} KB of host memory per in-flight saga.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small runs; about 90 s here")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--markdown", action="store_true", help="print the README table too")
    p.add_argument("--postgres", metavar="URL", default=None,
                   help="also measure hosted with the journal and the stores in this "
                        "PostgreSQL database (new schemas per run, dropped after), in the "
                        "same rounds, e.g. "
                        "postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--dbos", metavar="PYTHON", default=None,
                   help="with --postgres: also run the same order as a DBOS workflow on that "
                        "server, with this interpreter (one that has `pip install dbos`)")
    p.add_argument("--console", action="store_true",
                   help="also measure hosted at 100 in flight with 10 browser tabs (Debian's "
                        "chromium) on live saga pages of the console, round by round")
    p.add_argument("--cluster", action="store_true",
                   help="the capacity model on ray start clusters of 1-3 nodes, and replicas "
                        "of a blocking participant (scripts/bench_cluster.py; PostgreSQL: "
                        "--postgres URL, default the local server)")
    p.add_argument("--scale", type=int, default=0, metavar="N",
                   help="also hold N hosted sagas in flight at once (e.g. 10000)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw sagas/s and p50 per row and concurrency (needs the plot extra)")
    args = p.parse_args(argv)
    require_matplotlib(p, args.plot)
    if args.dbos and not args.postgres:
        p.error("--dbos needs --postgres URL (the server DBOS runs on)")
    if args.dbos and not Path(args.dbos).exists():
        p.error(f"--dbos {args.dbos}: no such interpreter")
    stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr  # Ray prints warnings to stdout: keep it for the JSON alone
    configure_logging("bench", "WARNING")
    if args.cluster:
        return _cluster_main(args, stdout)
    data_dir = tempfile.mkdtemp(prefix="saga-bench-")
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    os.environ.setdefault("RAY_TMPDIR", ray_tmp)
    ray.init(include_dashboard=False, log_to_driver=False, namespace="saga_actors_bench",
             _temp_dir=ray_tmp)
    started = time.perf_counter()
    try:
        report = {"machine": machine(), **asyncio.run(bench(args, data_dir))}
    finally:
        ray.shutdown()
    report["seconds"] = round(time.perf_counter() - started, 1)
    say(f"done in {report['seconds']}s; {report['derived']}")
    if args.plot:
        bench_plot(report, args.plot)
        say(f"plot written to {args.plot}")
    if args.json:
        print(json.dumps(report), file=stdout)
    if args.markdown or not args.json:
        print(markdown(report))
    return 0


def _cluster_main(args: argparse.Namespace, stdout: Any) -> int:
    from scripts import bench_cluster

    started = time.perf_counter()
    rows = bench_cluster.cluster_rows(
        args.postgres or "postgresql://postgres@127.0.0.1:5432/postgres", quick=args.quick)
    report = {"machine": machine(), "rows": rows, "derived": bench_cluster.derived(rows),
              "seconds": round(time.perf_counter() - started, 1)}
    say(f"done in {report['seconds']}s; {report['derived']}")
    if args.json:
        print(json.dumps(report), file=stdout)
    else:
        for r in rows:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
