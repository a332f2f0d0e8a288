"""How fast the saga console's list answers with many finished sagas in the journal.

    python scripts/console_list.py [--sagas 100000] [--repeat 20] [--json]

It fills a new SQLite journal with N finished sagas (three types, two versions, 9 in 10
COMPLETED, created over the last week), starts an embedded Ray with a runtime on that
journal (its registry) and the console in a process of its own (`saga-actors console`),
then times, over HTTP with the console's token, each list page an operator asks for:
newest first, by status, type, version, id prefix, an exact id, the last hour, a deep
page. It also times what one page view costs the registry itself (the same call
`saga-actors list` makes, `show`'s, and the overview, computed), in this process on the
same journal. Each figure is the median and the slowest of --repeat requests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402

from saga_actors import SagaRuntime  # noqa: E402
from saga_actors.journal import open_journal  # noqa: E402
from saga_actors.model.records import SagaRecord, first_transition  # noqa: E402
from saga_actors.model.state import SagaStatus  # noqa: E402
from saga_actors.services.registry import Registry  # noqa: E402

TOKEN = "console-list-bench"
TYPES = ("order_fulfillment", "trip_booking", "refund")


def say(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def fill(url: str, n: int) -> list[str]:
    """N finished sagas, each with a realistic record (input, outputs, steps done)."""
    journal = open_journal(url)
    rng = random.Random(7)
    now, ids, batch = time.time(), [], []
    for i in range(n):
        saga_type = TYPES[i % len(TYPES)]
        saga_id = f"{saga_type}-{i:07d}-{rng.getrandbits(32):08x}"
        created = now - 7 * 86400 * (1 - i / n)  # oldest first, the last just now
        failed = rng.random() < 0.1
        record = SagaRecord(
            saga_id=saga_id, saga_type=saga_type, version=1 + i % 2, placement="hosted",
            status=SagaStatus.FAILED if failed else SagaStatus.COMPLETED, seq=8,
            input={"order_id": f"o-{i}", "customer_id": f"c-{i % 997}",
                   "items": [{"sku": "WIDGET", "qty": 1 + i % 3}], "amount_cents": 1999},
            outputs={"reserve": {"reservation_id": f"res-{i}"},
                     "pay": {"payment_id": f"pay-{i}"}},
            completed=["reserve", "pay"], error="step 'ship' failed: no courier" if failed
            else None, created_at=created, updated_at=created + 0.05,
            finished_at=created + 0.05)
        batch.append((record, first_transition(record)))
        ids.append(saga_id)
        if len(batch) == 5000:
            journal.create_many(batch)
            batch = []
            say(f"  {i + 1:,} of {n:,} sagas written")
    if batch:
        journal.create_many(batch)
    journal.close()
    return ids


def timed(fn: Any, repeat: int) -> dict[str, float]:
    took = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        took.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": round(statistics.median(took), 1), "max_ms": round(max(took), 1)}


def get(url: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read().decode()


def start_console(namespace: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "SAGA_ACTORS_CONSOLE_TOKEN": TOKEN}
    console = subprocess.Popen(
        [str(Path(sys.executable).parent / "saga-actors"), "--address",
         ray.get_runtime_context().gcs_address, "--namespace", namespace, "console",
         "--port", str(port)], env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            get(f"http://127.0.0.1:{port}/api/overview")
            return console
        except OSError:
            if time.monotonic() > deadline or console.poll() is not None:
                raise RuntimeError("the console did not start") from None
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sagas", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = p.parse_args(argv)
    data_dir = tempfile.mkdtemp(prefix="console-list-")
    url = f"sqlite:///{data_dir}/journal.sqlite"
    say(f"writing {args.sagas:,} finished sagas into {url} ...")
    ids = fill(url, args.sagas)
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    rt = SagaRuntime(namespace="console_list", data_dir=data_dir)
    rt.services()
    port = 18000 + os.getpid() % 1000
    console = start_console("console_list", port)
    base = f"http://127.0.0.1:{port}"
    pages = {"newest first": "/sagas", "FAILED": "/sagas?status=FAILED",
             "one type": "/sagas?type=refund", "version 2": "/sagas?version=2",
             "id prefix": f"/sagas?q={ids[-1][:22]}", "an exact id": f"/sagas?q={ids[1234]}",
             "last hour": "/sagas?within=3600",
             "page 21 of a type and status": "/sagas?status=COMPLETED&type=refund&page=20",
             "overview": "/", "a saga's page": f"/sagas/{ids[-1]}"}
    report: dict[str, Any] = {"sagas": args.sagas, "repeat": args.repeat, "http": {},
                              "registry": {}}
    try:
        for name, path in pages.items():
            assert ids[-1] in get(base + path) or name not in ("newest first", "id prefix")
            report["http"][name] = timed(lambda path=path: get(base + path), args.repeat)
            say(f"  GET {path:<48} {report['http'][name]}")
    finally:
        console.terminate()
        console.wait(timeout=30)
        rt.close()
        ray.shutdown()
    journal = open_journal(url, read_only=True)
    registry = Registry(journal)
    report["registry"] = {
        "list (saga-actors list)": timed(lambda: registry.list(limit=50), args.repeat),
        "console list page": timed(lambda: registry.list(limit=51), args.repeat),
        "get (saga-actors show)": timed(lambda: registry.get(ids[-1]), args.repeat),
        "overview, computed": timed(lambda: Registry(journal).overview(), args.repeat),
    }
    for name, figures in report["registry"].items():
        say(f"  registry {name:<28} {figures}")
    worst = max(v["p50_ms"] for k, v in report["http"].items())
    report["slowest_list_p50_ms"] = worst
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
