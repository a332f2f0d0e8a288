"""SagaHost: many saga instances in one process. No Ray."""

from __future__ import annotations

import asyncio
import uuid

from saga_actors import SagaStatus
from saga_actors.engine.admission import admit, build_record
from saga_actors.journal import open_journal
from saga_actors.services.host import SagaHost, by_shard, shard_of
from tests.fakes import FakeClock, FakeGateway
from tests.sagas import ORDER


def world(n=6, hosts=2, script=None):
    journal = open_journal(f"memory://{uuid.uuid4().hex}")
    clock = FakeClock()
    gateway = FakeGateway(script)
    ids = []
    for i in range(n):
        rec = build_record(ORDER, f"h{i}", {"order_id": "o", "amount": 1}, now=clock.now(),
                           placement="hosted")
        admit(journal, rec)
        ids.append(rec.saga_id)
    made = [SagaHost(i, hosts, journal, gateway, clock=clock, restart_budget=2)
            for i in range(hosts)]
    for h in made:
        h.definitions.register(ORDER)
    return journal, gateway, made, ids


def test_shards_are_stable_and_cover_every_saga():
    ids = [f"saga-{i}" for i in range(1000)]
    shards = [shard_of(i, 4) for i in ids]
    assert shards == [shard_of(i, 4) for i in ids]
    assert set(shards) == {0, 1, 2, 3}
    groups = by_shard(ids, 4)  # what one call per host carries
    assert sorted(groups) == [0, 1, 2, 3] and sum(map(len, groups.values())) == 1000
    assert all(shard_of(i, 4) == n for n, group in groups.items() for i in group)
    records = by_shard([{"id": i} for i in ids[:10]], 4, lambda r: r["id"])
    assert {n: [r["id"] for r in g] for n, g in records.items()} == by_shard(ids[:10], 4)


def test_a_host_runs_many_sagas_at_once():
    journal, gateway, (host,), ids = world(hosts=1)

    async def go():
        return await asyncio.gather(*(host.run(i) for i in ids))

    assert asyncio.run(go()) == ["COMPLETED"] * len(ids)
    assert host.stats()["running"] == 0


def test_a_restarted_host_recovers_only_its_own_shard():
    journal, gateway, hosts, ids = world(n=12)

    async def go():
        started = [h.recover() for h in hosts]
        await asyncio.gather(*(t for h in hosts for t in list(h._tasks.values())))
        return started

    started = asyncio.run(go())
    assert sum(started) == 12 and all(started)
    assert all(journal.load(i).status is SagaStatus.COMPLETED for i in ids)
    for h in hosts:
        mine = {c.saga_id for c in gateway.calls} & {i for i in ids if h.owns(i)}
        assert mine == {i for i in ids if h.owns(i)}


def test_a_crashing_instance_is_restarted_then_parked_as_stuck():
    journal, gateway, (host,), ids = world(n=1, hosts=1)

    def boom(req):
        raise RuntimeError("bug in a participant client")

    gateway.on_call = boom

    async def go():
        status = await host.run(ids[0])
        return status

    status = asyncio.run(go())
    rec = journal.load(ids[0])
    assert status == "STUCK" and rec.status is SagaStatus.STUCK
    assert "crashed 3 times" in rec.error
    events = [t.event for t in journal.history(ids[0])]
    assert events.count("instance_restarted") == 2


def test_cancel_reaches_the_instance_in_its_host():
    journal, gateway, (host,), ids = world(n=1, hosts=1)
    gate = asyncio.Event()

    real_call = gateway.call

    async def slow(participant, request, timeout_s):
        if request.kind == "action":
            gate.set()
            await asyncio.sleep(3600)
        return await real_call(participant, request, timeout_s)

    gateway.call = slow

    async def go():
        run = asyncio.ensure_future(host.run(ids[0]))
        await gate.wait()
        assert await host.cancel(ids[0], "operator") is None  # None: it will compensate
        return await run

    assert asyncio.run(go()) == "FAILED"
    rec = journal.load(ids[0])
    assert rec.error == "cancelled: operator" and rec.compensated == ["reserve"]


def test_a_host_keeps_serving_while_another_process_holds_the_journal_write_lock(tmp_path):
    """Its journal writes are awaited, never made on its event loop: while another process
    holds SQLite's write lock, the host's loop runs on and answers (here it journals that a
    saga waits for its definition, and another saga's first write waits its turn), and the
    writes land once the lock is free (that saga's instance then crashes once, and is
    restarted and completes)."""
    import sqlite3
    import threading
    import time

    path = tmp_path / "journal.sqlite"
    journal = open_journal(f"sqlite:///{path}")
    clock = FakeClock()
    for saga_id in ("waits", "crashes"):
        admit(journal, build_record(ORDER, saga_id, {"order_id": "o", "amount": 1},
                                    now=clock.now(), placement="hosted"))
    gateway = FakeGateway()
    host = SagaHost(0, 1, journal, gateway, clock=clock, restart_budget=5)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def ticker(gaps: list[float]) -> None:
        last = time.monotonic()
        for _ in range(60):  # 0.6 s of ticks, all while the lock is held
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            assert host.stats()["host"] == 0  # and it answers

    async def go() -> float:
        other.execute("BEGIN IMMEDIATE")  # another process takes the write lock ...
        threading.Timer(1.0, lambda: other.execute("COMMIT")).start()  # ... for a second
        gaps: list[float] = []
        ticking = asyncio.ensure_future(ticker(gaps))
        await asyncio.sleep(0.05)
        assert host.ensure(["waits"]) == 1  # no definition here: journaled as waiting
        host.definitions.register(ORDER)
        crashed: list[str] = []

        def crash_once(req):
            if not crashed:
                crashed.append(req.step)
                raise RuntimeError("a bug")

        gateway.on_call = crash_once
        crash = asyncio.ensure_future(host.run("crashes"))  # its first write waits too
        await ticking
        assert await asyncio.wait_for(crash, timeout=20) == "COMPLETED"
        deadline = time.monotonic() + 20
        while journal.load("waits").waiting_for is None:
            assert time.monotonic() < deadline, "the waiting mark never landed"
            await asyncio.sleep(0.01)
        return max(gaps)

    try:
        longest = asyncio.run(go())
    finally:
        other.close()
        journal.close()
    assert longest < 0.3, f"the host's event loop stood still for {longest:.2f}s"
    journal = open_journal(f"sqlite:///{path}", read_only=True)
    assert "definition" in journal.load("waits").waiting_for
    assert "instance_restarted" in [t.event for t in journal.history("crashes")]


def test_when_the_hosts_grow_a_saga_moves_to_its_new_shard_and_never_runs_on_two():
    """hosts="auto" added a host: the old host gives up the sagas now of the new shard,
    the new one takes them from the journal, each completes once; an instance left over
    from before (a host that gave a saga up mid-write) is refused by the journal."""
    import pytest

    from saga_actors.engine.orchestration import SagaInstance
    from saga_actors.journal import JournalConflictError

    journal, gateway, (old,), ids = world(n=16, hosts=1)
    moving = [i for i in ids if shard_of(i, 2) == 1]
    snapshot = journal.load(moving[0])  # what a stale instance of it would hold
    new = SagaHost(1, 2, journal, gateway, clock=old._clock, restart_budget=2)
    new.definitions.register(ORDER)

    async def go():
        old.recover()
        await asyncio.sleep(0)  # every saga a step in, on the old host
        gave_up = old.resize(2)
        taken = new.recover()
        await asyncio.gather(*(t for h in (old, new) for t in list(h._tasks.values())),
                             return_exceptions=True)
        return gave_up, taken

    gave_up, taken = asyncio.run(go())
    assert gave_up == taken == len(moving) > 0
    assert all(journal.load(i).status is SagaStatus.COMPLETED for i in ids)
    for i in ids:  # one history each, no transition written twice
        seqs = [t.seq for t in journal.history(i)]
        assert seqs == sorted(set(seqs))
    stale = SagaInstance(ORDER, snapshot, journal, gateway, clock=old._clock)
    with pytest.raises(JournalConflictError):
        asyncio.run(stale.run())
    # a host past the count (being stopped, or started from a stale count) owns nothing
    extra = SagaHost(2, 2, journal, gateway, clock=old._clock)
    assert not any(extra.owns(i) for i in ids) and extra.recover() == 0
