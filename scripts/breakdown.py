"""Where one saga's time goes, one at a time: bench.py's order saga, `hosted`, against
bare_ray and durable_floor in the same run.

    python scripts/breakdown.py [--sagas N] [--rounds R] [--json]

R rounds alternate N bare_ray sagas, N durable_floor sagas (bare_ray plus the seven
fsynced commits a hosted saga makes, as in bench.py) and N hosted sagas, one after
another. It reports:

- the p50 of each, and hosted's ratio to the other two;
- for hosted, the p50 of each gap between the saga's journaled transitions (their ``at``
  times; a transition's time is taken just before it is written): from the driver's call
  to the first send (admission, the Ray call to the host, the host's first write), each
  step from its send to its success (the send's journal write, the participant call, the
  participant's effect and idempotency record in one fsynced transaction), a step's
  success to the next send, and the last transition to the driver seeing the end;
- the CPU milliseconds each process spent per saga, for each row (psutil, summed over the
  rounds): the driver, the hosts, the participants, the supervisor and registry, Ray's
  own processes. One at a time the chain of calls is serial, so a saga's latency is close
  to the CPU its processes spent on it: this says which process the gap is in.
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
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402  (the test extra installs it)
import ray  # noqa: E402

from saga_actors import configure_logging  # noqa: E402
from scripts.bench import (  # noqa: E402
    STEPS,
    BareOrchestrator,
    BareParticipant,
    DurableOrchestrator,
    DurableParticipant,
    _runtime,
)

ROWS = ("bare_ray", "durable_floor", "hosted")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the driver and of every Ray process, by name (several
    processes of one name are summed: both hosts, say)."""
    out: dict[str, float] = defaultdict(float)
    me = psutil.Process()
    for proc in psutil.process_iter(["name", "pid"]):
        try:
            name = "driver" if proc.pid == me.pid else proc.info["name"] or ""
            if name == "driver" or name.startswith("ray::") or name in ("raylet", "gcs_server"):
                t = proc.cpu_times()
                out[name.split(".")[0]] += t.user + t.system  # ray::Actor.method -> actor
        except psutil.Error:
            continue
    return out


async def run(sagas: int, rounds: int) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="saga-breakdown-")
    rt = _runtime(data_dir, "saga_actors_breakdown")
    parts = {p: BareParticipant.remote() for p, _, _ in STEPS}
    orch = BareOrchestrator.remote(parts)
    durable_parts = {p: DurableParticipant.remote(f"{data_dir}/durable_{p}.sqlite")
                     for p, _, _ in STEPS}
    durable = DurableOrchestrator.remote(durable_parts, f"{data_dir}/durable_journal.sqlite")
    for i in range(20):  # warm: every actor up, every code path taken once
        await orch.run.remote(f"w{i}", False)
        await durable.run.remote(f"w{i}")
        await rt.execute("bench_order", {"order_id": f"w{i}"}, placement="hosted")
    lat: dict[str, list[float]] = defaultdict(list)
    gaps: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, dict[str, float]] = {row: defaultdict(float) for row in ROWS}
    for r in range(rounds):
        marks = [cpu_seconds()]
        for i in range(sagas):
            t = time.perf_counter()
            await orch.run.remote(f"b{r}-{i}", False)
            lat["bare_ray"].append(time.perf_counter() - t)
        marks.append(cpu_seconds())
        for i in range(sagas):
            t = time.perf_counter()
            await durable.run.remote(f"d{r}-{i}")
            lat["durable_floor"].append(time.perf_counter() - t)
        marks.append(cpu_seconds())
        ids = []
        for i in range(sagas):
            t0, t = time.time(), time.perf_counter()
            rec = await rt.execute("bench_order", {"order_id": f"h{r}-{i}"}, placement="hosted",
                                   poll_s=0.0005)
            lat["hosted"].append(time.perf_counter() - t)
            ids.append((rec.saga_id, t0, time.time()))
        marks.append(cpu_seconds())
        for row, (before, after) in zip(ROWS, zip(marks, marks[1:], strict=False),
                                        strict=True):
            for name in after:
                cpu[row][name] += after[name] - before.get(name, 0)
        for saga_id, t0, t1 in ids:  # read after the timed loop: reading costs nothing there
            points = [("call", t0)] + [
                (f"{h.event.value}:{h.step}" if h.step else h.event.value, h.at)
                for h in rt.history(saga_id)[1:]] + [("driver sees the end", t1)]
            for k, ((a, ta), (b, tb)) in enumerate(zip(points, points[1:], strict=False)):
                gaps[f"{k + 1:02d} {a} -> {b}"].append(tb - ta)
    rt.close()
    for actor in [orch, *parts.values(), durable, *durable_parts.values()]:
        ray.kill(actor)
    n = sagas * rounds
    p50 = {k: round(statistics.median(v) * 1e3, 2) for k, v in lat.items()}
    return {
        "sagas": n,
        "p50_ms": p50,
        "hosted_vs_bare_ray": round(p50["hosted"] / p50["bare_ray"], 3),
        "hosted_vs_durable_floor": round(p50["hosted"] / p50["durable_floor"], 3),
        "hosted_gaps_p50_ms": {k: round(statistics.median(v) * 1e3, 3)
                               for k, v in sorted(gaps.items())},
        "cpu_ms_per_saga": {row: {k: round(v * 1e3 / n, 2) for k, v in sorted(
            used.items(), key=lambda kv: -kv[1]) if v * 1e3 / n >= 0.05}
            for row, used in cpu.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sagas", type=int, default=100, help="sagas per row per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = p.parse_args(argv)
    stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr  # Ray prints warnings to stdout: keep it for the JSON alone
    configure_logging("breakdown", "WARNING")
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    os.environ.setdefault("RAY_TMPDIR", ray_tmp)
    ray.init(include_dashboard=False, log_to_driver=False, namespace="saga_actors_breakdown",
             _temp_dir=ray_tmp)
    try:
        report = asyncio.run(run(args.sagas, args.rounds))
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps(report), file=stdout)
        return 0
    print(f"{report['sagas']} sagas a row, one at a time: p50 {report['p50_ms']}, hosted / "
          f"bare_ray {report['hosted_vs_bare_ray']}, hosted / durable_floor "
          f"{report['hosted_vs_durable_floor']}")
    for gap, ms in report["hosted_gaps_p50_ms"].items():
        print(f"  {gap:<58} {ms:>8} ms")
    for row, used in report["cpu_ms_per_saga"].items():
        print(f"  CPU ms per saga, {row}: {used}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
