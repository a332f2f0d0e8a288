"""The same 3-step order as bench.py's rows, as a DBOS workflow on PostgreSQL: what a
Python user would pick instead. Run by ``bench.py --dbos PYTHON`` in the same run (DBOS
is not a dependency of saga_actors: PYTHON is an interpreter that has it, e.g. made with
``python -m venv /tmp/dbos && /tmp/dbos/bin/pip install dbos``).

    PYTHON scripts/bench_dbos.py postgresql://user@host:port/DB N1 N100

Each step (``@DBOS.step``, sync: DBOS's thread-per-workflow model, faster than its async
one here) inserts one business row, idempotently (ON CONFLICT DO NOTHING), in DB; DBOS
checkpoints each step's output in its system database ``DB_sys``. (DBOS 3 removed
``@DBOS.transaction``, which committed both at once.) Prints one JSON list of rows.
"""

import json
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from dbos import DBOS

URL = sys.argv[1]
DBOS(config={"name": "bench", "system_database_url": URL + "_sys"})
ENGINE = sa.create_engine(URL.replace("postgresql://", "postgresql+psycopg://"), pool_size=30,
                          max_overflow=0)
STEPS = ("reserve_inventory", "process_payment", "create_shipment")


@DBOS.step()
def effect(step: str, order_id: str) -> dict:
    with ENGINE.begin() as c:
        c.execute(sa.text("INSERT INTO effects (order_id, step) VALUES (:o, :s) "
                          "ON CONFLICT DO NOTHING"), {"o": order_id, "s": step})
    return {step: order_id}


@DBOS.workflow()
def order(order_id: str) -> str:
    for step in STEPS:
        effect(step, order_id)
    return "COMPLETED"


def run(n: int, concurrency: int) -> dict:
    lat: list[float] = []

    def one(_: int) -> None:
        t = time.perf_counter()
        handle = DBOS.start_workflow(order, f"o{uuid.uuid4().hex}")
        assert handle.get_result() == "COMPLETED"
        lat.append((time.perf_counter() - t) * 1000)

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - began
    lat.sort()
    return {"name": "dbos_postgres", "concurrency": concurrency, "mix": "success", "sagas": n,
            "sagas_per_s": round(n / elapsed, 1), "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[max(0, int(len(lat) * 0.99) - 1)], 2)}


if __name__ == "__main__":
    with ENGINE.begin() as c:
        c.execute(sa.text("CREATE TABLE IF NOT EXISTS effects (order_id TEXT, step TEXT, "
                          "PRIMARY KEY (order_id, step))"))
    DBOS.launch()
    run(20, 1)  # warm
    print(json.dumps([run(int(sys.argv[2]), 1), run(int(sys.argv[3]), 100)]))
    DBOS.destroy()
