"""The ways a host can call a participant over Ray, measured side by side on this machine.

    python scripts/call_paths.py [--calls N] [--json]

One caller actor makes N calls, one at a time, to one participant actor whose method
returns its argument, for each way of calling it. It reports the round trip's p50 and p99
and the CPU that the caller and the callee spent per call. All rows run in ONE process and
run, in turns. A compiled graph (Ray's `experimental_compile`) is driven from the
driver and calls a sync method, so it is measured beside the same plain call from the
driver to the same sync participant.

  async_await        an async participant, `await ref` (today's path)
  sync_await         a threaded (sync) participant, `await ref`
  async_get_thread   `ray.get(ref)` on a thread of the caller (`run_in_executor`)
  no_task_events     as async_await, with `enable_task_events=False` on the call
  named_task         as async_await, the task named `<saga_id>/<step>` (the dashboard's)
  driver_call        from the driver: `ray.get(actor.echo.remote(x))` (the sync participant)
  compiled_graph     from the driver: the same call as a compiled graph
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import psutil
import ray


@ray.remote
class AsyncCallee:
    async def echo(self, x: Any) -> Any:
        return x

    def pid(self) -> int:
        return os.getpid()


@ray.remote(max_concurrency=8)
class SyncCallee:
    def echo(self, x: Any) -> Any:
        return x

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class Caller:
    async def run(self, callee: Any, way: str, n: int) -> list[float]:
        loop = asyncio.get_running_loop()
        method = callee.echo
        if way == "no_task_events":
            method = callee.echo.options(enable_task_events=False)
        out = []
        for i in range(n):
            t = time.perf_counter()
            if way == "named_task":
                await callee.echo.options(name=f"saga-{i}/step").remote(i)
            elif way == "async_get_thread":
                ref = method.remote(i)
                await loop.run_in_executor(None, ray.get, ref)
            else:
                await method.remote(i)
            out.append(time.perf_counter() - t)
        return out

    def pid(self) -> int:
        return os.getpid()


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def row(way: str, latencies: list[float], cpu: dict[str, float], n: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {"way": way, "calls": n, "p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
            **{f"{k}_cpu_us_per_call": round(v * 1e6 / n, 1) for k, v in cpu.items()}}


def measure(n: int) -> list[dict[str, Any]]:
    callees = {"async": AsyncCallee.remote(), "sync": SyncCallee.remote()}
    caller = Caller.remote()
    pids = {k: ray.get(c.pid.remote()) for k, c in callees.items()}
    caller_pid = ray.get(caller.pid.remote())
    ways = {"async_await": "async", "sync_await": "sync", "async_get_thread": "async",
            "no_task_events": "async", "named_task": "async"}
    for way, kind in ways.items():  # warm each path
        ray.get(caller.run.remote(callees[kind], way, 50))
    results: dict[str, list[float]] = {w: [] for w in ways}
    cpu: dict[str, dict[str, float]] = {w: {"caller": 0.0, "callee": 0.0} for w in ways}
    for _ in range(3):  # in turns: the machine's swings hit every row alike
        for way, kind in ways.items():
            before = cpu_s(caller_pid), cpu_s(pids[kind])
            results[way] += ray.get(caller.run.remote(callees[kind], way, n // 3))
            cpu[way]["caller"] += cpu_s(caller_pid) - before[0]
            cpu[way]["callee"] += cpu_s(pids[kind]) - before[1]
    rows = [row(w, results[w], cpu[w], len(results[w])) for w in ways]
    rows += driver_rows(callees["sync"], pids["sync"], n)  # (a compiled graph: sync methods)
    return rows


def driver_rows(callee: Any, pid: int, n: int) -> list[dict[str, Any]]:
    from ray.dag import InputNode

    with InputNode() as inp:
        dag = callee.echo.bind(inp)
    compiled = dag.experimental_compile()
    out = []
    for way in ("driver_call", "compiled_graph"):
        for i in range(50):  # warm
            ray.get(compiled.execute(i)) if way == "compiled_graph" else ray.get(
                callee.echo.remote(i))
        me = psutil.Process()
        before_me, before = me.cpu_times(), cpu_s(pid)
        lat = []
        for i in range(n):
            t = time.perf_counter()
            if way == "compiled_graph":
                ray.get(compiled.execute(i))
            else:
                ray.get(callee.echo.remote(i))
            lat.append(time.perf_counter() - t)
        after_me = me.cpu_times()
        out.append(row(way, lat, {
            "caller": (after_me.user + after_me.system) - (before_me.user + before_me.system),
            "callee": cpu_s(pid) - before}, n))
    compiled.teardown()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=900)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(include_dashboard=False, log_to_driver=False, _temp_dir=ray_tmp,
             logging_level="ERROR")
    try:
        rows = measure(args.calls)
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps({"rows": rows}))
    else:
        print("| way | p50 ms | p99 ms | caller CPU us/call | callee CPU us/call |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['way']} | {r['p50_ms']} | {r['p99_ms']} | "
                  f"{r['caller_cpu_us_per_call']} | {r['callee_cpu_us_per_call']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
