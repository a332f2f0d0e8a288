"""The supervisor's logic with a fake fleet of in-process saga instances. No Ray."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from saga_actors import SagaStatus, SagaUsageError
from saga_actors.engine.admission import admit, build_record
from saga_actors.journal import open_journal
from saga_actors.model.definition import RetryPolicy
from saga_actors.services.supervisor import Supervisor, SupervisorSettings
from tests.fakes import FakeClock, FakeFleet, FakeGateway, fail
from tests.sagas import ORDER


class World:
    def __init__(self, script=None, *, deadline_s=None, **settings):
        self.saga = (ORDER if deadline_s is None
                     else ORDER.model_copy(update={"deadline_s": deadline_s}))
        self.journal = open_journal(f"memory://{uuid.uuid4().hex}")
        self.clock = FakeClock()
        self.gateway = FakeGateway(script)
        self.fleet = FakeFleet(self.journal, self.gateway, self.clock)
        settings.setdefault("restart_backoff", RetryPolicy(initial_backoff_s=0.1, jitter=0))
        self.sup = Supervisor(self.journal, self.fleet, settings=SupervisorSettings(**settings),
                              clock=self.clock)
        self.sup.definitions.register(self.saga)

    def add(self, n=1):
        ids = []
        for i in range(n):
            saga_id = f"s{len(self.journal.query()) + i}"
            admit(self.journal, build_record(self.saga, saga_id, {"order_id": "o", "amount": 1},
                                             now=self.clock.now()))
            ids.append(saga_id)
        return ids

    async def drive(self, done, *, ticks=400, step_s=0.5):
        for _ in range(ticks):
            await self.sup.tick()
            for _ in range(20):
                await asyncio.sleep(0)
            if done():
                return
            self.clock.t += step_s
        raise AssertionError("supervisor did not get there")

    def status(self, saga_id):
        return self.journal.load(saga_id).status

    def all_terminal(self):
        return all(r.status.terminal for r in self.journal.query())


def test_admission_keeps_at_most_k_actors_and_finishes_everything():
    w = World(max_dedicated=3)
    ids = w.add(12)
    asyncio.run(w.drive(w.all_terminal))
    assert all(w.status(i) is SagaStatus.COMPLETED for i in ids)
    assert w.fleet.max_alive == 3
    assert sorted(w.fleet.spawned) == sorted(ids)


def test_queued_sagas_wait_in_started():
    w = World(max_dedicated=1)
    w.fleet.hang.add("s0")
    ids = w.add(3)

    async def one_tick():
        await w.sup.tick()
        return w.sup.status()

    status = asyncio.run(one_tick())
    assert [w.status(i) for i in ids[1:]] == [SagaStatus.STARTED, SagaStatus.STARTED]
    assert status["queued"] == 2 and status["live"] == 1


def test_a_lost_actor_is_restarted_from_the_journal():
    w = World()
    (saga_id,) = w.add()
    w.fleet.hang.add(saga_id)

    async def scenario():
        await w.sup.tick()
        w.fleet.kill(saga_id)  # the process dies
        await w.drive(w.all_terminal)

    asyncio.run(scenario())
    assert w.status(saga_id) is SagaStatus.COMPLETED
    events = [t.event for t in w.journal.history(saga_id)]
    assert "actor_restarted" in events
    assert w.journal.load(saga_id).restarts == 1


def test_past_the_restart_budget_the_saga_is_stuck_and_retry_revives_it():
    w = World(restart_budget=2)
    (saga_id,) = w.add()

    async def scenario():
        for _ in range(3):
            w.fleet.hang.add(saga_id)
            await w.drive(lambda: saga_id in w.fleet.alive)
            w.fleet.kill(saga_id)
        await w.drive(lambda: w.status(saga_id) is SagaStatus.STUCK)
        rec = w.journal.load(saga_id)
        assert "restart budget 2" in rec.error and rec.stuck_from is SagaStatus.STARTED
        assert await w.sup.retry(saga_id) == "STARTED"
        await w.drive(w.all_terminal)

    asyncio.run(scenario())
    assert w.status(saga_id) is SagaStatus.COMPLETED


def test_a_stalled_actor_is_killed_and_restarted():
    w = World(stall_grace_s=5)
    (saga_id,) = w.add()
    w.fleet.hang.add(saga_id)
    asyncio.run(w.drive(w.all_terminal))
    assert w.fleet.killed == [saga_id]
    assert w.status(saga_id) is SagaStatus.COMPLETED


@pytest.mark.parametrize(("deadline_s", "ends"), [(None, SagaStatus.COMPLETED),
                                                  (3, SagaStatus.FAILED)])
def test_an_actor_ray_has_not_started_yet_is_neither_killed_nor_nudged(deadline_s, ends):
    """Chaos found it: after a whole-Ray restart, 90 recovered sagas queued for worker
    processes were killed as 'stalled' while waiting, restarted, and killed again."""
    w = World(stall_grace_s=5, deadline_s=deadline_s)
    (saga_id,) = w.add()
    up = w.fleet.slow_start[saga_id] = asyncio.Event()

    async def scenario():
        with pytest.raises(AssertionError, match="did not get there"):
            await w.drive(lambda: False, ticks=100)  # 50 s of waiting for a process
        assert w.fleet.killed == [] and w.status(saga_id) is SagaStatus.STARTED
        up.set()
        await w.drive(w.all_terminal)

    asyncio.run(scenario())
    assert w.fleet.killed == [] and w.fleet.spawned == [saga_id]
    assert w.status(saga_id) is ends


def test_a_saga_past_its_deadline_whose_actor_hangs_is_compensated():
    w = World(deadline_s=3, stall_grace_s=1000)
    (saga_id,) = w.add()
    w.fleet.hang.add(saga_id)
    asyncio.run(w.drive(w.all_terminal))
    rec = w.journal.load(saga_id)
    assert rec.status is SagaStatus.FAILED
    assert "deadline of 3s exceeded" in rec.error
    assert w.fleet.killed == [saga_id]  # it did not answer the nudge


def test_cancel_of_a_queued_saga_fails_it_without_running_steps():
    w = World(max_dedicated=1)
    w.fleet.hang.add("s0")
    a, b = w.add(2)

    async def scenario():
        await w.sup.tick()
        assert await w.sup.cancel(b, "not wanted")
        w.fleet.kill(a)
        await w.drive(w.all_terminal)

    asyncio.run(scenario())
    rec = w.journal.load(b)
    assert rec.status is SagaStatus.FAILED and rec.error == "cancelled: not wanted"
    assert not [c for c in w.gateway.calls if c.saga_id == b]


def test_a_refused_cancel_says_why():
    w = World(max_dedicated=1)
    w.fleet.hang.add("s0")
    a, b = w.add(2)

    async def scenario():
        await w.sup.tick()
        live = await w.sup.cancel_refusal(a, "not wanted")  # its hung actor answers
        w.fleet.kill(a)
        await w.drive(w.all_terminal)
        return live, await w.sup.cancel_refusal(b, "late")

    live, done = asyncio.run(scenario())
    assert live == "no live instance"  # the fleet's own words (a hung fake answers so)
    assert done == f"it is already {w.journal.load(b).status.value}"


def test_resolve_ends_a_stuck_saga_with_the_note():
    w = World(script={("ship", "action"): [fail(retryable=False)],
                      ("pay", "compensation"): [fail(retryable=False)]})
    (saga_id,) = w.add()
    asyncio.run(w.drive(w.all_terminal))
    assert w.status(saga_id) is SagaStatus.STUCK
    with pytest.raises(SagaUsageError, match="needs a note"):
        asyncio.run(w.sup.resolve(saga_id, " "))
    asyncio.run(w.sup.resolve(saga_id, "refunded by hand, ticket 42"))
    rec = w.journal.load(saga_id)
    assert rec.status is SagaStatus.FAILED and "ticket 42" in rec.error
    assert w.journal.history(saga_id)[-1].detail == {"note": "refunded by hand, ticket 42"}
    with pytest.raises(SagaUsageError, match="not STUCK"):
        asyncio.run(w.sup.resolve(saga_id, "again"))
    with pytest.raises(SagaUsageError, match="not STUCK"):
        asyncio.run(w.sup.retry(saga_id))


def test_retry_re_drives_pending_compensations():
    w = World(script={("ship", "action"): [fail(retryable=False)],
                      ("reserve", "compensation"): [fail()]})
    (saga_id,) = w.add()
    asyncio.run(w.drive(w.all_terminal))
    assert w.status(saga_id) is SagaStatus.STUCK
    w.gateway.script[("reserve", "compensation")] = []
    assert asyncio.run(w.sup.retry(saga_id)) == "COMPENSATING"
    asyncio.run(w.drive(w.all_terminal))
    rec = w.journal.load(saga_id)
    assert rec.status is SagaStatus.FAILED and rec.compensated == ["pay", "reserve"]


def test_a_new_supervisor_recovers_sagas_left_in_flight():
    w = World()
    (saga_id,) = w.add()

    class Crash(BaseException):
        pass

    def crash(req):
        if req.step == "pay":
            raise Crash

    w.gateway.on_call = crash

    async def first_life():
        await w.sup.tick()
        with pytest.raises(Crash):
            await w.fleet.alive[saga_id]

    asyncio.run(first_life())
    assert w.journal.load(saga_id).in_flight
    w.gateway.on_call = None
    fresh = World.__new__(World)
    fresh.__dict__.update(w.__dict__)
    fresh.fleet = FakeFleet(w.journal, w.gateway, w.clock)
    fresh.sup = Supervisor(w.journal, fresh.fleet, clock=w.clock)
    fresh.sup.definitions.register(w.saga)
    asyncio.run(fresh.drive(fresh.all_terminal))
    assert fresh.status(saga_id) is SagaStatus.COMPLETED


def test_a_new_actor_gets_a_full_stall_span_however_old_the_journal_entry():
    w = World(stall_grace_s=5)  # limit here: 10 s timeout + 1 s backoff + 5 s grace
    (saga_id,) = w.add()
    w.clock.t += 3600  # e.g. the whole cluster was down for an hour
    w.fleet.hang.add(saga_id)  # its new actor has not written anything yet

    async def scenario():
        await w.sup.tick()  # spawns it
        await asyncio.sleep(0)  # its watcher sees it up
        w.clock.t += 1
        await w.sup.tick()
        early = list(w.fleet.killed)
        w.clock.t += 20
        await w.sup.tick()
        return early, list(w.fleet.killed)

    early, late = asyncio.run(scenario())
    assert early == []  # judged by the old journal time it would have been killed at once
    assert late == [saga_id]  # but a truly silent actor is still caught


def test_a_definitions_store_that_cannot_be_read_is_not_taken_for_a_missing_definition():
    """A KV read error is an error, tried again: the saga is not journaled as waiting for
    a definition nobody registered; once the store answers, it runs."""
    from saga_actors.engine.catalog import Catalog
    from saga_actors.errors import DefinitionStoreError

    class Flaky:
        broken = True

        def get(self, name, version):
            if self.broken:
                raise ConnectionError("the GCS did not answer")
            return ORDER if (name, version) == (ORDER.name, ORDER.version) else None

    store = Flaky()
    w = World()
    w.sup.definitions = Catalog(store, clock=w.clock.now)
    (saga_id,) = w.add(1)
    with pytest.raises(DefinitionStoreError, match="the GCS did not answer"):
        w.sup.definitions.resolve(w.journal.load(saga_id))

    async def scenario():
        for _ in range(3):
            await w.sup.tick()
            w.clock.t += 0.5
        events = [t.event for t in w.journal.history(saga_id)]
        store.broken = False
        w.clock.t += 2.0
        await w.drive(w.all_terminal)
        return events

    before = asyncio.run(scenario())
    assert "definition_missing" not in before and w.fleet.spawned == [saga_id]
    rec = w.journal.load(saga_id)
    assert rec.status is SagaStatus.COMPLETED and rec.waiting_for is None


def test_the_supervisors_settings_come_from_the_runtime_config():
    """One source for settings: how long the supervisor waits for a dedicated saga's actor
    is runner_answer_timeout_s, as for a host."""
    from saga_actors import RuntimeConfig

    config = RuntimeConfig.load(runner_answer_timeout_s=7.5, max_dedicated=3,
                                restart_budget=2, stall_grace_s=4.0)
    settings = SupervisorSettings.from_config(config)
    assert (settings.answer_timeout_s, settings.max_dedicated, settings.restart_budget,
            settings.stall_grace_s) == (7.5, 3, 2, 4.0)
