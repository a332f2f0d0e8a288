"""Saga actors: one saga instance in its own actor (``saga:<id>``), or many in a saga host
or bus (``saga_actors:host:<i>``, ``saga_actors:bus:<i>``)."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import ray
from loguru import logger

from saga_actors.constants import (
    pool_actor_name,
    saga_actor_name,
)
from saga_actors.logging import configure_logging
from saga_actors.ray.actors import (
    COUNT_SENT_EVERY_S,
    SERVICE,
    Recycler,
    make_gateway,
    settle_gc,
    where,
)
from saga_actors.ray.gateway import get_riding_restarts
from saga_actors.ray.host_count import current_hosts

# Each actor is a new process that imports this module: what only one kind of actor needs
# is imported in that actor's constructor (about 0.1 s of CPU per actor start here).
if TYPE_CHECKING:
    from saga_actors.config import RuntimeConfig
    from saga_actors.model.definition import Saga


class SagaActorImpl:
    """One saga instance in its own Ray actor; resumes from the journal on every start."""

    def __init__(self, definition: Saga, saga_id: str, config: RuntimeConfig,
                 participants: dict[str, Any] | None = None) -> None:
        """``participants``: handles of its participant actors, if the caller has them."""
        from saga_actors.engine.crash_points import crash_points
        from saga_actors.engine.orchestration import SagaInstance
        from saga_actors.journal import open_journal
        from saga_actors.ray.definitions import cluster_catalog
        from saga_actors.ray.feed import RegistryFeed

        configure_logging("saga", config.log_level)
        settle_gc()
        self._saga_id = saga_id
        self._linger_s = config.saga_linger_s
        journal = open_journal(config.journal, create=False)
        journal.write_alone_when(lambda: True)  # one saga in this process
        record = journal.load(saga_id)
        if record is None:
            raise LookupError(f"saga {saga_id} is not in the journal {config.journal}")
        self._feed = RegistryFeed(config.namespace)
        gateway = make_gateway(config)
        gateway.seed(participants or {})
        self.instance = SagaInstance(
            definition, record, journal, gateway,
            on_transition=self._feed.push, fault_point=crash_points(config),
            definitions=cluster_catalog(config),  # for the sagas its child steps run
        )
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            record = await self.instance.run()
            logger.bind(saga_id=self._saga_id).info("saga ended {}", record.status.value)
        except Exception:
            # A bug or a lost journal: die so the actor is restarted and resumes from the
            # journal, rather than leave a live actor whose saga never moves.
            logger.bind(saga_id=self._saga_id).exception("saga instance crashed; restarting")
            os._exit(1)
        await self._feed.flush(wait=True)
        await asyncio.sleep(self._linger_s)  # let Ray report the last step tasks
        # Done: free the process. The journal holds the outcome.
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def ready(self) -> bool:
        """True: the actor is up and its saga loaded (the supervisor asks once)."""
        return True

    async def watch(self) -> str:
        """Return the saga's status once it is terminal (the supervisor keeps one pending)."""
        await asyncio.shield(self._task)
        return self.instance.record.status.value

    async def status(self) -> dict[str, Any]:
        """The instance's current record."""
        return self.instance.record.model_dump(mode="json")

    async def cancel(self, reason: str) -> str | None:
        """Abort and compensate: None when it will, else why it cannot."""
        return await self.instance.cancel(reason)

    async def nudge(self) -> bool:
        """Re-check the deadline, cancel requests and signals now."""
        self.instance.nudge()
        return True

    def __repr__(self) -> str:
        return f"SagaActor({saga_actor_name(self._saga_id)})"


SagaActor = ray.remote(SagaActorImpl)


def spawn_saga_actor(definition: Saga, saga_id: str, config: RuntimeConfig,
                     participants: dict[str, Any] | None = None) -> Any:
    """Create (or find) the dedicated actor of ``saga_id``; it starts running at once.
    ``participants``: the handles of its participant actors, if known."""
    return SagaActor.options(
        name=saga_actor_name(saga_id),
        namespace=config.namespace,
        lifetime="detached",
        max_restarts=config.saga_max_restarts,
        max_concurrency=1000,
        num_cpus=0,
        get_if_exists=True,
        **where(config),
    ).remote(definition, saga_id, config, participants)


class SagaHostImpl:
    """A pool member for `hosted` placement (thousands of saga instances in one actor), or
    for choreographed sagas (a bus: each saga's events delivered in order)."""

    def __init__(self, index: int, count: int, config: RuntimeConfig,
                 placement: str = "hosted") -> None:
        from saga_actors.engine.crash_points import crash_points
        from saga_actors.journal import open_journal
        from saga_actors.ray.definitions import cluster_catalog
        from saga_actors.ray.feed import RegistryFeed
        from saga_actors.services.host import SagaHost

        configure_logging(f"{'bus' if placement == 'choreography' else 'host'}{index}",
                          config.log_level)
        settle_gc()
        self._feed = RegistryFeed(config.namespace)
        self._gateway = make_gateway(config, batch=config.batch_calls)
        if config.cpus_per_host is not None:  # hosts="auto": the count now, not its caller's
            count = current_hosts(config, fresh=True)
        self.host = SagaHost(
            index, count, open_journal(config.journal, create=False), self._gateway,
            on_transition=self._feed.push, fault_point=crash_points(config),
            restart_budget=config.restart_budget, definitions=cluster_catalog(config),
            placement=placement,
        )
        self._index = index
        self._placement = placement
        what = f"{'bus' if placement == 'choreography' else 'host'} {index}"
        self._fed = False  # the last registry batch went out before a recycle
        self._recycler = Recycler(what, config.recycle_after_tasks, busy=lambda: not self._fed)
        loop = asyncio.get_running_loop()
        loop.call_soon(self.host.recover)
        if config.recycle_after_tasks:
            self._counting = loop.create_task(self._count_sent())

    async def _count_sent(self) -> None:
        """Count the Ray tasks this host sent (its sagas' participant calls), for the
        recycler; the host's sagas resume from the journal in its next process."""
        counted = 0
        while not self._recycler.exiting:
            await asyncio.sleep(COUNT_SENT_EVERY_S)
            sent = self._gateway.sent["ray_calls"]
            self._recycler.count(sent - counted)
            counted = sent
        await self._feed.flush(wait=True)
        self._fed = True

    async def register(self, definitions: list[Saga]) -> None:
        for saga in definitions:
            self.host.definitions.register(saga)

    async def run(self, saga_id: str, admitted: dict[str, Any] | None = None) -> str:
        """Run a journaled saga here; the reply is its terminal status."""
        return await self.host.run(saga_id, admitted)

    async def start(self, saga_ids: list[str], admitted: list[dict] | None = None) -> int:
        """Start journaled sagas here; no call stays open per saga."""
        return self.host.start(saga_ids, admitted)

    async def wait(self, saga_ids: list[str]) -> list[str]:
        """Terminal statuses of these sagas, once all have ended."""
        return await self.host.wait(saga_ids)

    async def ended(self, epoch: str | None, cursor: int,
                    wait_s: float) -> tuple[str, int, list[tuple[str, str]]]:
        """Sagas that ended here since ``cursor`` (a long poll: :class:`EndedLog`)."""
        return await self.host.ended.since(epoch, cursor, wait_s)

    async def ensure(self, saga_ids: list[str]) -> int:
        return self.host.ensure(saga_ids)

    async def cancel(self, saga_id: str, reason: str) -> str | None:
        return await self.host.cancel(saga_id, reason)

    async def nudge(self, saga_id: str) -> bool:
        return self.host.nudge(saga_id)

    async def resize(self, count: int) -> int:
        return self.host.resize(count)

    async def restart(self, saga_id: str) -> bool:
        return self.host.restart(saga_id)

    async def stats(self) -> dict[str, Any]:
        import resource

        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {**self.host.stats(), **self._gateway.sent, "pid": os.getpid(),
                "peak_rss_mb": round(rss_mb, 1)}

    def __repr__(self) -> str:
        kind = "Bus" if self._placement == "choreography" else "SagaHost"
        return f"{kind}({pool_actor_name(self._placement, self._index)})"


SagaHostActor = ray.remote(SagaHostImpl)


def saga_host(index: int, config: RuntimeConfig, placement: str = "hosted") -> Any:
    """Start (or find) host ``index`` of ``config.hosts`` (``placement="choreography"``: bus
    ``saga_actors:bus:<index>``, as many as hosts)."""
    return SagaHostActor.options(
        name=pool_actor_name(placement, index), namespace=config.namespace,
        max_concurrency=100_000, **SERVICE, **where(config, spread=(placement, index)),
    ).remote(index, current_hosts(config), config, placement)


def saga_hosts(config: RuntimeConfig, placement: str = "hosted") -> list[Any]:
    """Every host (or bus) of the pool, started if need be."""
    hosts = [saga_host(i, config, placement) for i in range(current_hosts(config))]
    # (asked again while one restarts: a host being restarted must not fail a caller)
    get_riding_restarts(lambda: [h.stats.remote() for h in hosts])
    return hosts
