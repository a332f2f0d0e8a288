"""Replicas of one participant sharing its store (no Ray): each in its own thread and
event loop, as in its own process. The same idempotency key given to two at the same
instant applies once, on SQLite and on PostgreSQL; on PostgreSQL two keys commit side by
side (a lock per key, not one per store)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from saga_actors import Participant, StepContext, action
from saga_actors.model.messages import StepRequest


class Till(Participant):
    name = "till"

    def setup(self, db):
        db.execute("CREATE TABLE IF NOT EXISTS sales (saga_id TEXT, cents INTEGER)")  # no key

    @action
    def sell(self, ctx: StepContext) -> dict:
        ctx.db.execute("INSERT INTO sales VALUES (?, ?)", (ctx.saga_id, 100))
        return {"sale": f"{ctx.saga_id}-{uuid.uuid4().hex[:6]}"}

    @action(blocking=True)
    def sell_slowly(self, ctx: StepContext) -> dict:
        ctx.db.execute("INSERT INTO sales VALUES (?, ?)", (ctx.saga_id, 100))
        time.sleep(ctx.data.get("hold_s", 0))  # holding its transaction open
        return {"sale": f"{ctx.saga_id}-{uuid.uuid4().hex[:6]}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "till.sqlite")
    return f"{request.getfixturevalue('pg_database')}?schema=till_{uuid.uuid4().hex[:8]}"


def request(saga_id: str, method: str = "sell", **data) -> StepRequest:
    return StepRequest(saga_id=saga_id, saga_type="t", step="sell", kind="action",
                       method=method, attempt=1, data=data)


def replicas_at_once(location: str, requests: list[StepRequest],
                     after_s: list[float] | None = None) -> list[tuple]:
    """Each request handled by a replica of its own, in a thread of its own, all released
    at the same instant (or ``after_s`` each after it); (reply, seconds it took) each."""
    Till(store=location).db.close()  # the store made once, as the first replica does
    start = threading.Barrier(len(requests))
    out: list[tuple] = [None] * len(requests)

    def replica(i: int) -> None:
        till = Till(store=location)
        start.wait()
        time.sleep((after_s or [0.0] * len(requests))[i])
        began = time.monotonic()
        reply = asyncio.run(till.handle(requests[i]))
        out[i] = (reply, time.monotonic() - began)
        till.db.close()

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def sales(location: str, saga_id: str) -> int:
    till = Till(store=location)
    try:
        return till.db.execute("SELECT COUNT(*) FROM sales WHERE saga_id=?",
                               (saga_id,)).fetchone()[0]
    finally:
        till.db.close()


@pytest.mark.parametrize("method", ["sell", "sell_slowly"])
def test_two_replicas_given_the_same_key_at_the_same_instant_apply_it_once(location, method):
    replies = replicas_at_once(location, [request("s1", method, hold_s=0.3)] * 2)
    (a, _), (b, _) = replies
    assert a.ok and b.ok, (a.error, b.error)
    assert a.output == b.output  # the second was answered with the first's record
    assert sorted([a.replayed, b.replayed]) == [False, True]
    assert sales(location, "s1") == 1


def test_on_postgresql_replicas_commit_different_keys_side_by_side(pg_database):
    location = f"{pg_database}?schema=till_{uuid.uuid4().hex[:8]}"
    replies = replicas_at_once(location, [request("long", "sell_slowly", hold_s=1.5),
                                          request("short", "sell_slowly", hold_s=0.0)],
                               after_s=[0.0, 0.4])  # the long one holds its lock first
    (long, _), (short, took) = replies
    assert long.ok and short.ok
    assert took < 1.0  # not held up by the other's open transaction (a lock per key)
    assert sales(location, "long") == sales(location, "short") == 1
