"""`hosted` placement: many saga instances in one long-lived process.

Each instance is the very same :class:`~saga_actors.engine.orchestration.SagaInstance` as in a
dedicated actor — its own asyncio task, state and wake-up event — so a host holds thousands
of sagas for the price of one process. Sagas are sharded over hosts by a stable hash of
their id; a host that (re)starts recovers every unfinished hosted saga of its shard from
the journal. No Ray here: :mod:`saga_actors.ray.actors` wraps it in the ``SagaHost`` actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from loguru import logger

from saga_actors.clock import Clock, SystemClock
from saga_actors.constants import shard_of
from saga_actors.engine.catalog import Catalog, mark_waiting
from saga_actors.engine.choreography import ChoreographyInstance
from saga_actors.engine.orchestration import SagaInstance
from saga_actors.engine.restarts import count_restart, restart_backoff
from saga_actors.engine.runner import FaultPoint, Gateway, TransitionListener
from saga_actors.errors import DefinitionStoreError, SagaNotFoundError
from saga_actors.journal.base import Journal, JournalConflictError
from saga_actors.model.choreography import Choreography
from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord
from saga_actors.model.state import SagaStatus
from saga_actors.services.ended import EndedLog

RESTART_POLL_S = 0.05  # a caller waiting on a crashed saga looks for its next instance
_TERMINAL = {s.value for s in SagaStatus if s.terminal}
T = TypeVar("T")


def by_shard(
    items: Iterable[T], hosts: int, saga_id: Callable[[T], str] = str
) -> dict[int, list[T]]:
    """``items`` grouped by the host that runs them (``saga_id`` gives an item's id)."""
    groups: dict[int, list[T]] = {}
    for item in items:
        groups.setdefault(shard_of(saga_id(item), hosts), []).append(item)
    return groups


class SagaHost:
    """Runs the hosted sagas of one shard until each is terminal."""

    def __init__(
        self,
        index: int,
        count: int,
        journal: Journal,
        gateway: Gateway,
        *,
        definitions: Catalog | None = None,
        on_transition: TransitionListener | None = None,
        fault_point: FaultPoint | None = None,
        restart_budget: int = 5,
        clock: Clock | None = None,
        placement: str = "hosted",
    ) -> None:
        self.index = index
        self.count = count
        self.placement = placement  # hosted, or choreography (a bus)
        self.definitions = definitions or Catalog()
        self._journal = journal
        self._gateway = gateway
        self._on_transition = on_transition
        self._fault_point = fault_point
        self._restart_budget = restart_budget
        self._backoff = restart_backoff()
        self._clock = clock or SystemClock()
        self._tasks: dict[str, asyncio.Task] = {}
        self._side_tasks: set[asyncio.Task] = set()  # journal writes nobody waits for
        self._instances: dict[str, SagaInstance] = {}
        self.ran = 0  # sagas this host ran to their end (for the capacity bench)
        self.ended = EndedLog()  # for callers waiting on many sagas at once
        # one saga here: its writes need not wait to be grouped with others'
        journal.write_alone_when(lambda: len(self._tasks) <= 1)

    def owns(self, saga_id: str) -> bool:
        """Whether ``saga_id`` is of this host's shard (none, for a host past the count:
        one being stopped, or started by a caller whose count was stale)."""
        return self.index < self.count and shard_of(saga_id, self.count) == self.index

    def resize(self, count: int) -> int:
        """The number of hosts changed (they follow the cluster): give up the sagas no
        longer of this shard, and take those that now are, from the journal. A saga given
        up mid-write and taken by its new host meanwhile never runs on both: the journal
        refuses the stale writer's next transition (its seq is taken). Returns how many
        were given up."""
        self.count = count
        gone = [saga_id for saga_id in self._tasks if not self.owns(saga_id)]
        for saga_id in gone:
            self._instances.pop(saga_id, None)
            self._tasks.pop(saga_id).cancel()
        if gone:
            logger.info("host {} of {} gave up {} saga(s) to their new shards", self.index,
                        count, len(gone))
        self.recover()
        return len(gone)

    def recover(self) -> int:
        """Start every unfinished hosted saga of this shard; returns how many."""
        started = 0
        for record in self._journal.non_terminal(placement=self.placement):
            if record.parent_id:
                continue  # a child saga: its parent runs it
            if self.owns(record.saga_id) and self._ensure(record) is not None:
                started += 1
        if started:
            logger.info("host {} recovered {} saga(s) from the journal", self.index, started)
        return started

    def ensure(self, saga_ids: list[str]) -> int:
        """Make sure each unfinished saga here has a running instance; returns how many
        were not running."""
        missing = [i for i in saga_ids if i not in self._tasks]
        for saga_id in missing:
            record = self._journal.load(saga_id)
            if record is not None:
                self._ensure(record)
        return len(missing)

    def _ensure(self, record: SagaRecord, *, admitted: bool = False) -> asyncio.Task | None:
        task = self._tasks.get(record.saga_id)
        if task is not None or record.status.terminal or record.parent_id:
            return task  # a child saga runs inside its parent's instance
        try:
            definition = self.definitions.resolve(record)
        except DefinitionStoreError as exc:  # not known to be missing: the supervisor's
            logger.warning("saga {}: {}", record.saga_id, exc)  # next pass asks again
            return None
        if definition is None:  # waits, visibly, until someone registers the definition
            self._background(mark_waiting(self._journal, record, now=self._clock.now()))
            return None
        options: dict[str, Any] = {}
        if isinstance(definition, Choreography):
            make: Any = ChoreographyInstance
        else:
            make, options = SagaInstance, {"definitions": self.definitions}
        instance = make(definition, record, self._journal, self._gateway,
                        clock=self._clock, on_transition=self._on_transition,
                        fault_point=self._fault_point, admitted=admitted, **options)
        task = asyncio.ensure_future(self._drive(instance))
        self._tasks[record.saga_id] = task
        self._instances[record.saga_id] = instance
        return task

    async def _drive(self, instance: SagaInstance) -> str:
        saga_id = instance.saga_id
        try:
            status = (await instance.run()).status.value
            self.ran += 1
            self.ended.add(saga_id, status)
            return status
        except JournalConflictError:
            logger.warning("saga {}: another instance advanced it; this one stops", saga_id)
            return "SUPERSEDED"
        except Exception as exc:
            logger.exception("saga {} crashed in host {}", saga_id, self.index)
            return await self._after_crash(saga_id, f"{type(exc).__name__}: {exc}")
        finally:
            self._tasks.pop(saga_id, None)
            self._instances.pop(saga_id, None)

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Journal something the caller need not wait for (that a saga waits for its
        definition), awaited on this loop, never blocking it; kept until done."""
        task = asyncio.ensure_future(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _after_crash(self, saga_id: str, why: str) -> str:
        record = self._journal.load(saga_id)
        if record is None or record.status.terminal:
            return record.status.value if record else "UNKNOWN"
        delay = await count_restart(
            self._journal, record, what="instance crashed", event=Event.INSTANCE_RESTARTED,
            why=why, budget=self._restart_budget, backoff=self._backoff, now=self._clock.now(),
        )
        if delay is None:
            return SagaStatus.STUCK.value
        asyncio.get_running_loop().call_later(delay, self.ensure, [saga_id])
        return record.status.value

    # --- requests -------------------------------------------------------------------

    async def run(self, saga_id: str, admitted: dict[str, Any] | None = None) -> str:
        """Run ``saga_id`` here (if not yet running) and return its terminal status.

        ``admitted`` is the record the caller just journaled (it saves a read); without it
        the record comes from the journal.
        """
        fresh = admitted is not None and saga_id not in self._tasks
        record = SagaRecord.model_validate(admitted) if fresh else self._journal.load(saga_id)
        if record is None:
            raise SagaNotFoundError(saga_id)
        while record.parent_id and not record.status.terminal:  # its parent runs it
            await self._clock.sleep(RESTART_POLL_S)
            record = self._journal.load(saga_id) or record
        while True:
            task = self._ensure(record, admitted=fresh)
            fresh = False
            if task is None:
                return record.status.value
            status = await asyncio.shield(task)
            if status in _TERMINAL:
                return status
            record = self._journal.load(saga_id)
            if record.status.terminal:
                return record.status.value
            # crashed and scheduled for a restart: wait for the next instance
            await self._clock.sleep(RESTART_POLL_S)

    def start(self, saga_ids: list[str], admitted: list[dict[str, Any]] | None = None) -> int:
        """Start sagas here without keeping a call open per saga (each pending Ray call
        costs the host ~55 KB); :meth:`wait` collects their outcomes. Returns how many."""
        if admitted:
            return sum(self._ensure(SagaRecord.model_validate(a), admitted=True) is not None
                       for a in admitted)
        records = [self._journal.load(i) for i in saga_ids]
        return sum(self._ensure(r) is not None for r in records if r is not None)

    async def wait(self, saga_ids: list[str]) -> list[str]:
        """The terminal status of each saga, once all of them have ended."""
        return list(await asyncio.gather(*(self.run(i) for i in saga_ids)))

    async def cancel(self, saga_id: str, reason: str) -> str | None:
        """Ask a saga of this host to abort: None when it will compensate, else why not."""
        instance = self._instances.get(saga_id)
        if instance is None:
            return ("its host has no live instance of it (it is being started or restarted): "
                    "try again in a moment")
        return await instance.cancel(reason)

    def nudge(self, saga_id: str) -> bool:
        """Wake a saga (a child saga: through its root, which runs it)."""
        instance = self._instances.get(saga_id.split("/", 1)[0])
        if instance is not None:
            instance.nudge()
        return instance is not None

    def restart(self, saga_id: str) -> bool:
        """Drop a stalled instance and run a fresh one from the journal."""
        task = self._tasks.pop(saga_id, None)
        self._instances.pop(saga_id, None)
        if task is not None:
            task.cancel()
        return self.ensure([saga_id]) == 1

    def stats(self) -> dict[str, Any]:
        return {"host": self.index, "running": len(self._tasks), "ran": self.ran}
