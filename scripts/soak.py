"""Soak: many hosted sagas through the same long-lived actors; is every process's memory flat?

    python scripts/soak.py --sagas N [--concurrency C] [--json] [--plot FILE.png]
        [--data-dir DIR] [--sample-every S]

It starts an embedded Ray (with its dashboard: the state API names each actor's process),
deploys the order's three participants once, and keeps C hosted sagas in flight until N
have ended, sampling the resident memory of every Ray process (each actor by its name, the
driver as ``driver``) every S seconds. Then it checks the outcome from the participants'
own stores (every forward effect applied once per completed saga, nothing else, stock and
money balanced) and reports, per process, the memory at the start and the end and its
slope over the second half of the run, in MB per 10,000 sagas (a least-squares line of
RSS against sagas ended). With --json, stdout holds one object:
{"sagas", "completed", "lost", "duplicate_effects", "unbalanced", "elapsed_s",
"processes": [{"name", "pid", "rss_mb_start", "rss_mb_end", "slope_mb_per_10k"}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402  (the test extra installs it)
import ray  # noqa: E402

from examples.order_fulfillment import ORDER_FULFILLMENT, PARTICIPANTS  # noqa: E402
from saga_actors import SagaRuntime, configure_logging  # noqa: E402
from scripts.plots import require_matplotlib, soak_plot  # noqa: E402

SKUS = ("WIDGET", "GADGET")


def order(n: int) -> dict[str, Any]:
    """The n-th soak order: one of each item, a price that varies."""
    return {"order_id": f"soak-{n}", "customer_id": f"c{n % 50}",
            "items": [{"sku": sku, "qty": 1} for sku in SKUS],
            "amount_cents": 1000 + n % 97, "address": "1 Soak Street"}


class Sampler:
    """RSS of every Ray process of this session and of the driver, against sagas ended. A
    recycled actor (a new process) is found again by its name every few samples."""

    def __init__(self, every_s: float, names: Any) -> None:
        self.every_s = every_s
        self.find = names  # () -> {pid: actor name}, the driver too
        self.names: dict[int, str] = names()
        self.series: dict[str, list[tuple[int, float]]] = {}
        self.ended = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        for pid, name in self.names.items():
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss / 2**20
                if rss <= 0 or proc.status() == psutil.STATUS_ZOMBIE:
                    continue  # exiting (a recycle): its successor is found by name
            except psutil.Error:
                continue
            self.series.setdefault(name, []).append((self.ended, round(rss, 2)))

    def _run(self) -> None:
        samples = 0
        while not self._stop.wait(self.every_s):
            samples += 1
            if samples % 5 == 0:
                with contextlib.suppress(Exception):  # the state API busy: the old names hold
                    self.names = self.find()
            self.sample()


def slope_per_10k(points: list[tuple[int, float]]) -> float | None:
    """Least-squares MB per 10,000 sagas over the second half of the run."""
    if not points:
        return None
    half = points[-1][0] / 2
    tail = [(x, y) for x, y in points if x >= half]
    if len(tail) < 3:
        return None
    try:
        fit = statistics.linear_regression([x for x, _ in tail], [y for _, y in tail])
    except statistics.StatisticsError:  # every sample at the same count of sagas
        return None
    return round(fit.slope * 10_000, 3)


def actor_pids(namespace: str) -> dict[int, str]:
    """pid -> actor name, for every live actor of ``namespace`` (from the state API)."""
    from ray.util.state import list_actors

    address = ray.get_runtime_context().gcs_address
    found = list_actors(address=address, filters=[("ray_namespace", "=", namespace),
                                                  ("state", "=", "ALIVE")],
                        limit=10_000, raise_on_missing_output=False, detail=True)
    return {a.pid: a.name for a in found if a.pid and a.name}


async def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    rt = SagaRuntime(sagas=[ORDER_FULFILLMENT], data_dir=args.data_dir, namespace="soak",
                     log_level="WARNING", participant_max_concurrency=20_000,
                     name_tasks=not args.no_task_names)
    inventory_cls = next(c for c in PARTICIPANTS if c.name == "inventory")
    # enough stock for every order, so that every saga can complete
    actors = {"inventory": rt.deploy(inventory_cls, stock={s: args.sagas + 10 for s in SKUS}),
              **rt.deploy_many([c for c in PARTICIPANTS if c is not inventory_cls])}
    inventory, payment = actors["inventory"], actors["payment"]
    await rt.execute(ORDER_FULFILLMENT.name, order(-1), placement="hosted")  # warm: all up
    stock_before = await inventory.stock_levels.remote()
    money_before = await payment.balance.remote()
    def names() -> dict[int, str]:
        return {**actor_pids(rt.config.namespace), os.getpid(): "driver"}

    sampler = Sampler(args.sample_every, names).start()
    say(f"soak: {args.sagas} sagas, {args.concurrency} in flight, sampling "
        f"{len(sampler.names)} processes every {args.sample_every:g}s")
    started = time.monotonic()
    statuses: dict[str, int] = {}
    next_n = 0
    last_said = started

    async def worker() -> None:
        nonlocal next_n, last_said
        while next_n < args.sagas:
            n = next_n
            next_n += 1
            rec = await rt.execute(ORDER_FULFILLMENT.name, order(n), saga_id=f"soak-{n}",
                                   placement="hosted", poll_s=0.05)
            statuses[rec.status.value] = statuses.get(rec.status.value, 0) + 1
            sampler.ended += 1
            now = time.monotonic()
            if now - last_said > 10:
                last_said = now
                rate = sampler.ended / (now - started)
                say(f"  {sampler.ended:>8} ended  {rate:7.1f}/s  "
                    f"eta {(args.sagas - sampler.ended) / max(rate, 0.1):5.0f}s")

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    sampler.stop()

    applied: dict[str, int] = {}
    duplicates = 0
    for actor in actors.values():
        for effect in await actor.ledger.remote():
            if not effect["saga_id"].startswith("soak-") or effect["saga_id"] == "soak--1":
                continue
            key = effect["key"]
            applied[key] = applied.get(key, 0) + 1
            duplicates += applied[key] > 1
    completed = statuses.get("COMPLETED", 0)
    forward = 3 * completed
    stock_after = await inventory.stock_levels.remote()
    money_after = await payment.balance.remote()
    charged = money_after["net_cents"] - money_before["net_cents"]
    expected_cents = sum(order(n)["amount_cents"] for n in range(args.sagas))
    stock_before = {s: stock_before[s] for s in SKUS}
    unbalanced = (any(stock_before[s] - stock_after[s] != completed for s in SKUS)
                  or charged != expected_cents or len(applied) != forward)
    rt.close()
    processes = []
    for name, points in sorted(sampler.series.items()):
        pid = next((p for p, n in sampler.names.items() if n == name), None)
        processes.append({"name": name, "pid": pid, "rss_mb_start": points[0][1],
                          "rss_mb_end": points[-1][1],
                          "slope_mb_per_10k": slope_per_10k(points)})
    if args.plot:
        soak_plot(sampler.series, args.plot, args.sagas)
    return {"sagas": args.sagas, "completed": completed, "lost": args.sagas - completed,
            "duplicate_effects": duplicates, "unbalanced": bool(unbalanced),
            "statuses": statuses, "elapsed_s": round(elapsed, 1),
            "sagas_per_s": round(args.sagas / elapsed, 1), "processes": processes,
            "series": {k: v for k, v in sampler.series.items()} if args.series else None,
            "task_names": not args.no_task_names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sagas", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--sample-every", type=float, default=2.0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--series", action="store_true", help="put the samples in the JSON too")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-task-names", action="store_true",
                   help="participant calls as plain Ray tasks, not named <saga_id>/<step> "
                        "(to see what the names cost)")
    args = p.parse_args(argv)
    if args.sagas < 10 or args.concurrency < 1:
        p.error("--sagas must be at least 10 and --concurrency at least 1")
    require_matplotlib(p, args.plot)
    stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr
    configure_logging("soak", "WARNING")
    args.data_dir = args.data_dir or tempfile.mkdtemp(prefix="saga-soak-")
    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(include_dashboard=True, log_to_driver=False, namespace="soak", _temp_dir=tmp)

    def say(*a: Any) -> None:
        print(*a, file=sys.stderr, flush=True)

    report = asyncio.run(run(args, say))
    ray.shutdown()
    if args.json:
        print(json.dumps(report), file=stdout)
    else:
        for proc in report["processes"]:
            print(f"  {proc['name']:<40} {proc['rss_mb_start']:8.1f} -> "
                  f"{proc['rss_mb_end']:8.1f} MB   slope {proc['slope_mb_per_10k']} MB/10k")
        print({k: v for k, v in report.items() if k not in ("processes", "series")})
    ok = report["lost"] == 0 and not report["duplicate_effects"] and not report["unbalanced"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
