"""The supervisor: restarts lost saga actors, enforces deadlines, notices stalls, recovers
every non-terminal saga at its own (re)start, and admits at most K dedicated saga actors.

A plain class: what it does to actors goes through a :class:`Fleet`, which
:mod:`saga_actors.ray.actors` implements with Ray and unit tests fake.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from loguru import logger

from saga_actors.clock import Clock, SystemClock
from saga_actors.config import RuntimeConfig
from saga_actors.constants import POOLED
from saga_actors.engine.catalog import Catalog, mark_waiting
from saga_actors.engine.children import child_id
from saga_actors.engine.restarts import count_restart, reopen_stuck, restart_backoff, stall_limit_s
from saga_actors.engine.transitions import advance_async
from saga_actors.errors import (
    DefinitionStoreError,
    RunnerUnavailableError,
    SagaActorLost,
    SagaNotFoundError,
    SagaUsageError,
)
from saga_actors.journal.base import Journal
from saga_actors.model.definition import RetryPolicy, Saga
from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord
from saga_actors.model.state import SagaStatus
from saga_actors.services.deliveries import Deliveries


class Fleet(Protocol):
    """What the supervisor does to saga actors."""

    def spawn(self, definition: Saga, saga_id: str) -> Any:
        """Start (or find) the actor running ``saga_id``; return its handle."""

    async def watch(self, saga_id: str, handle: Any, running: Callable[[], None]) -> None:
        """Call ``running()`` once the actor is up (Ray started its process and it loaded
        the saga), return when it has finished; raise :class:`SagaActorLost`."""

    async def nudge(self, handle: Any, timeout_s: float) -> bool:
        """Wake the saga to re-check its deadline; False if the actor did not answer."""

    async def cancel(self, saga_id: str, handle: Any, reason: str,
                     timeout_s: float) -> str | None:
        """Ask the saga to abort and compensate: None when it will, else why it cannot."""

    def kill(self, handle: Any) -> None:
        """Kill the actor for good (the supervisor restarts it from the journal)."""

    async def follow_cluster(self) -> int | None:
        """With hosts="auto": match the hosts and buses to the cluster (the new count)."""

    async def ensure_hosted(self, saga_ids: list[str], placement: str = "hosted") -> None:
        """Make sure each hosted (or choreographed) saga runs in its host (or bus)."""

    async def hosted(self, saga_id: str, method: str, *args: Any,
                     placement: str = "hosted") -> Any:
        """Call ``method`` (cancel, nudge, restart) for a pooled saga on its host or bus."""


@dataclass
class SupervisorSettings:
    """Limits of the supervisor (filled from :class:`RuntimeConfig`)."""

    max_dedicated: int = 64
    restart_budget: int = 5
    restart_backoff: RetryPolicy = field(
        default_factory=restart_backoff
    )
    stall_grace_s: float = 10.0
    deadline_grace_s: float = 1.0
    answer_timeout_s: float = 30.0  # RuntimeConfig.runner_answer_timeout_s
    spawn_retry_s: float = 1.0  # a saga whose actor could not be started is tried again
    hosted_check_every: int = 10  # ticks between passes over hosted sagas
    max_nudges: int = 3  # past its deadline, nudged this often without effect: killed

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> SupervisorSettings:
        """The supervisor's settings from the runtime's one source of settings."""
        return cls(max_dedicated=config.max_dedicated, restart_budget=config.restart_budget,
                   stall_grace_s=config.stall_grace_s,
                   answer_timeout_s=config.runner_answer_timeout_s)


@dataclass
class _Live:
    handle: Any
    started_at: float = 0.0
    running_at: float | None = None  # None while Ray is still starting the actor
    waiting_logged: bool = False
    watcher: asyncio.Task | None = None
    nudges: int = 0
    nudged_at: float = 0.0


class Supervisor(Deliveries):
    """Keeps every accepted, non-terminal saga running until it is terminal."""

    def __init__(
        self,
        journal: Journal,
        fleet: Fleet,
        *,
        settings: SupervisorSettings | None = None,
        definitions: Catalog | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._journal = journal
        self._fleet = fleet
        self.settings = settings or SupervisorSettings()
        self.definitions = definitions or Catalog()
        self._clock = clock or SystemClock()
        self._live: dict[str, _Live] = {}
        self._not_before: dict[str, float] = {}
        self._unresolvable: set[str] = set()
        self.wake = asyncio.Event()
        self._ticks = 0

    # --- the loop -------------------------------------------------------------------

    async def run_forever(self, tick_s: float) -> None:
        """Tick now, then whenever woken, at least every ``tick_s``."""
        while True:
            try:
                await self.tick()
            except Exception:
                logger.exception("supervisor tick failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=tick_s)
            self.wake.clear()

    def definitions_changed(self) -> None:
        """New definitions were registered: look at waiting sagas, hosted ones too, now."""
        self._ticks = 0
        self.wake.set()

    async def tick(self) -> None:
        """Check every live saga; start queued ones while there are free slots."""
        now = self._clock.now()
        if self._ticks % self.settings.hosted_check_every == 0:
            await self._fleet.follow_cluster()  # hosts="auto": as many hosts as the nodes
            await self._check_hosted(now)
        self._ticks += 1
        waiting = []
        for record in self._journal.non_terminal(placement="dedicated"):
            if record.parent_id:
                continue  # its parent runs it
            live = self._live.get(record.saga_id)
            if live is not None:
                self._check(record, live, now)
            else:
                waiting.append(record)
        for record in waiting:
            if len(self._live) >= self.settings.max_dedicated:
                break
            if self._not_before.get(record.saga_id, 0.0) <= now:
                await self._spawn(record)

    async def _spawn(self, record: SagaRecord) -> bool:
        try:
            definition = self.definitions.resolve(record)
        except DefinitionStoreError as exc:  # not known to be missing: try again soon
            logger.warning("saga {}: {}; trying again", record.saga_id, exc)
            self._not_before[record.saga_id] = self._clock.now() + self.settings.spawn_retry_s
            return False
        if definition is None:
            self._unresolvable.add(record.saga_id)
            await mark_waiting(self._journal, record, now=self._clock.now())
            return False
        self._unresolvable.discard(record.saga_id)
        try:
            handle = self._fleet.spawn(definition, record.saga_id)
        except Exception as exc:
            logger.warning("saga {}: spawn failed, will retry: {}", record.saga_id, exc)
            self._not_before[record.saga_id] = self._clock.now() + self.settings.spawn_retry_s
            return False
        live = _Live(handle, started_at=self._clock.now())
        self._live[record.saga_id] = live
        live.watcher = asyncio.ensure_future(self._watch(record.saga_id, live))
        return True

    async def _watch(self, saga_id: str, live: _Live) -> None:
        lost: str | None = None
        def running() -> None:
            live.running_at = self._clock.now()

        try:
            await self._fleet.watch(saga_id, live.handle, running)
        except SagaActorLost as exc:
            lost = exc.detail
        finally:
            if self._live.get(saga_id) is live:
                del self._live[saga_id]
            self.wake.set()
        record = self._journal.load(saga_id)
        if record is None or record.status.terminal:
            self._not_before.pop(saga_id, None)
            return
        await self._restart_or_give_up(record, lost or "actor exited before the saga ended")

    async def _restart_or_give_up(self, record: SagaRecord, why: str) -> None:
        delay = await count_restart(
            self._journal, record, what="saga actor lost", event=Event.ACTOR_RESTARTED, why=why,
            budget=self.settings.restart_budget, backoff=self.settings.restart_backoff,
            now=self._clock.now(),
        )
        if delay is not None:
            self._not_before[record.saga_id] = self._clock.now() + delay

    async def _check_hosted(self, now: float) -> None:
        for placement in POOLED:
            await self._check_pool(placement, now)

    async def _check_pool(self, placement: str, now: float) -> None:
        records = [r for r in self._journal.non_terminal(placement=placement)
                   if not r.parent_id]  # a child saga: its parent runs it
        if not records:
            return
        await self._fleet.ensure_hosted([r.saga_id for r in records], placement=placement)
        for record in records:
            definition = self.definitions.resolve(record)
            if definition is None:
                continue
            try:
                if self._overdue(definition, record, now):
                    await self._fleet.hosted(record.saga_id, "nudge", placement=placement)
                elif now - self._progress_at(definition, record) > stall_limit_s(
                        definition, record, self.settings.stall_grace_s):
                    logger.warning("{} saga {}: no progress; restarting its instance",
                                   placement, record.saga_id)
                    await self._fleet.hosted(record.saga_id, "restart", placement=placement)
            except RunnerUnavailableError as exc:  # the next pass looks again
                logger.warning("{}", exc)

    def _overdue(self, definition: Saga, record: SagaRecord, now: float) -> bool:
        """Past its deadline (and grace) while it could still be aborted."""
        return (
            record.deadline_at is not None
            and now > record.deadline_at + self.settings.deadline_grace_s
            and record.status in (SagaStatus.STARTED, SagaStatus.PENDING)
            and not definition.past_pivot(record.completed)
        )

    def _check(self, record: SagaRecord, live: _Live, now: float) -> None:
        definition = self.definitions.resolve(record)
        if definition is None:
            return
        s = self.settings
        stall = stall_limit_s(definition, record, s.stall_grace_s)
        if live.running_at is None:
            # Ray has not started its process yet (actor starts queue up on a busy node):
            # nothing to nudge or kill; once up, the instance checks its own deadline
            if now - live.started_at > stall and not live.waiting_logged:
                live.waiting_logged = True
                logger.warning("saga {}: its actor has waited {:.0f}s for Ray to start it",
                               record.saga_id, now - live.started_at)
            return
        if self._overdue(definition, record, now) and now - live.nudged_at > s.answer_timeout_s:
            live.nudges += 1
            live.nudged_at = now
            if live.nudges > s.max_nudges:
                self._kill(record.saga_id, live, "ignored its deadline")
            else:
                asyncio.ensure_future(self._nudge(record.saga_id, live))
            return
        # a new actor gets a full span
        quiet = now - max(self._progress_at(definition, record), live.running_at)
        if quiet > stall:
            self._kill(record.saga_id, live, f"no progress for {quiet:.1f}s")

    def _progress_at(self, definition: Saga, record: SagaRecord) -> float:
        """When the saga last journaled progress: a parent running a child step progresses
        while its child does."""
        at = record.updated_at
        name = record.current_step
        if name is None:
            return at
        for step in definition.group(name) or (definition.step(name),):
            if step.child:
                child = self._journal.load(child_id(record.saga_id, step.name))
                if child is not None:
                    at = max(at, child.updated_at)
        return at

    async def _nudge(self, saga_id: str, live: _Live) -> None:
        if not await self._fleet.nudge(live.handle, self.settings.answer_timeout_s):
            self._kill(saga_id, live, "did not answer past its deadline")

    def _kill(self, saga_id: str, live: _Live, why: str) -> None:
        logger.warning("saga {}: killing its actor: {}", saga_id, why)
        self._fleet.kill(live.handle)

    # --- operator requests ----------------------------------------------------------

    def _load(self, saga_id: str) -> SagaRecord:
        record = self._journal.load(saga_id)
        if record is None:
            raise SagaNotFoundError(saga_id)
        if record.parent_id:
            raise SagaUsageError(f"saga {saga_id} is a child of {record.parent_id}, which "
                                 "runs it: cancel, retry or resolve the parent")
        return record

    async def cancel(self, saga_id: str, reason: str) -> bool:
        """Abort a running or queued saga: True if it will compensate and end FAILED (asking
        again is safe); False if it cannot (:meth:`cancel_refusal` says why). Raises
        :class:`RunnerUnavailableError` if the actor running it does not answer."""
        return await self.cancel_refusal(saga_id, reason) is None

    async def cancel_refusal(self, saga_id: str, reason: str) -> str | None:
        """:meth:`cancel`, answering why not: None when the saga will compensate, else
        the reason it cannot (done, past its pivot, between actors, ...)."""
        record = self._load(saga_id)
        if record.status.terminal:
            return f"it is already {record.status.value}"
        if record.cancel_reason:
            return None  # asked before: it will compensate (asking twice is safe)
        if record.placement in POOLED:
            return await self._fleet.hosted(saga_id, "cancel", reason,
                                            placement=record.placement)
        live = self._live.get(saga_id)
        if live is not None:
            return await self._fleet.cancel(saga_id, live.handle, reason,
                                            self.settings.answer_timeout_s)
        if record.status is not SagaStatus.STARTED or record.completed:
            # between actors: let the next one take the request
            return "its actor is being restarted: try again in a moment"
        await advance_async(self._journal, record, Event.CANCEL_REQUESTED,
                            now=self._clock.now(), cancel_reason=reason,
                            detail={"reason": reason})
        self.wake.set()
        return None

    async def retry(self, saga_id: str) -> str:
        """Re-drive a STUCK saga from where it stuck; returns the status it resumes in."""
        record = self._load(saga_id)
        if record.status is not SagaStatus.STUCK:
            raise SagaUsageError(f"saga {saga_id} is {record.status.value}, not STUCK")
        back = (await reopen_stuck(self._journal, record, now=self._clock.now())).status
        self._not_before.pop(saga_id, None)
        self.wake.set()
        return back.value

    async def resolve(self, saga_id: str, note: str) -> None:
        """An operator fixed a STUCK saga by hand: it ends FAILED, the note in its history."""
        record = self._load(saga_id)
        if record.status is not SagaStatus.STUCK:
            raise SagaUsageError(f"saga {saga_id} is {record.status.value}, not STUCK")
        if not note.strip():
            raise SagaUsageError("resolve needs a note saying what was done")
        now = self._clock.now()
        await advance_async(
            self._journal, record, Event.RESOLVED, now=now, status=SagaStatus.FAILED,
            finished_at=now, error=f"{record.error} (resolved by operator: {note})",
            detail={"note": note})

    def status(self) -> dict[str, Any]:
        """Live actors, queued sagas (counted in the journal now), limits."""
        waiting = self._journal.non_terminal(placement="dedicated")
        return {
            "live": len(self._live),
            "queued": sum(1 for r in waiting if r.saga_id not in self._live),
            "max_dedicated": self.settings.max_dedicated,
            "unresolvable": sorted(self._unresolvable),
        }
