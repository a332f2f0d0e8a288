"""The supervisor and the registry as named, detached Ray actors, started (or found) in
the runtime's namespace."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import ray
from loguru import logger

from saga_actors.constants import (
    REGISTRY_ACTOR_NAME,
    SUPERVISOR_ACTOR_NAME,
)
from saga_actors.logging import configure_logging
from saga_actors.ray.actors import (
    SERVICE,
    settle_gc,
    where,
)

# Each actor is a new process that imports this module: what only one kind of actor needs
# is imported in that actor's constructor (about 0.1 s of CPU per actor start here).
if TYPE_CHECKING:
    from saga_actors.config import RuntimeConfig
    from saga_actors.model.definition import Saga


class SupervisorActorImpl:
    """The supervisor in its own detached actor; recovers everything when it (re)starts."""

    def __init__(self, config: RuntimeConfig) -> None:
        from saga_actors.journal import open_journal
        from saga_actors.ray.definitions import cluster_catalog
        from saga_actors.ray.fleet import RayFleet
        from saga_actors.ray.sagas import saga_host, spawn_saga_actor
        from saga_actors.services.supervisor import Supervisor, SupervisorSettings

        configure_logging("supervisor", config.log_level)
        settle_gc()
        settings = SupervisorSettings.from_config(config)
        fleet = RayFleet(config, spawn=spawn_saga_actor, host=saga_host)
        self.supervisor = Supervisor(open_journal(config.journal, create=False), fleet,
                                     settings=settings, definitions=cluster_catalog(config))
        self._max_signal_bytes = config.max_input_bytes
        self._namespace = config.namespace
        self._loop = asyncio.get_running_loop().create_task(
            self.supervisor.run_forever(config.supervisor_tick_s)
        )

    async def register(self, definitions: list[Saga]) -> None:
        """Make saga types known (those not importable by reference need this)."""
        for saga in definitions:
            self.supervisor.definitions.register(saga)
        self.supervisor.definitions_changed()

    async def notify(self) -> None:
        """New sagas were journaled: look now rather than at the next tick."""
        self.supervisor.wake.set()

    async def cancel(self, saga_id: str, reason: str) -> bool:
        return await self.supervisor.cancel(saga_id, reason)

    async def cancel_refusal(self, saga_id: str, reason: str) -> str | None:
        return await self.supervisor.cancel_refusal(saga_id, reason)

    async def retry(self, saga_id: str) -> str:
        return await self.supervisor.retry(saga_id)

    async def resolve(self, saga_id: str, note: str) -> None:
        await self.supervisor.resolve(saga_id, note)

    async def signal(self, saga_id: str, name: str, payload: Any, signal_id: str) -> bool:
        return await self.supervisor.signal(saga_id, name, payload, signal_id,
                                            self._max_signal_bytes)

    async def publish(self, saga_type: str, version: int | None, event_type: str, payload: Any,
                      event_id: str, saga_id: str | None) -> tuple[str, bool]:
        """An event from outside for a running choreographed saga; the registry counts
        the duplicates dropped and the events refused because their saga had finished."""
        from saga_actors.errors import SagaFinishedError

        try:
            found, fresh = await self.supervisor.publish(
                saga_type, version, event_type, payload, event_id, saga_id,
                self._max_signal_bytes)
        except SagaFinishedError:
            self._count(saga_type, "refused_finished")
            raise
        if not fresh:
            self._count(saga_type, "duplicate_dropped")
        return found, fresh

    def _count(self, saga_type: str, what: str) -> None:
        try:
            registry = ray.get_actor(REGISTRY_ACTOR_NAME, namespace=self._namespace)
            registry.count_outside.remote(saga_type, what)  # (fire and forget)
        except Exception as exc:  # noqa: BLE001 - a count must not fail the publish
            logger.warning("cannot count {} for {}: {}", what, saga_type, exc)

    async def status(self) -> dict[str, Any]:
        return self.supervisor.status()

    def __repr__(self) -> str:
        return f"Supervisor({SUPERVISOR_ACTOR_NAME})"


class RegistryActorImpl:
    """The registry in its own detached actor, re-publishing metrics and resyncing."""

    def __init__(self, config: RuntimeConfig) -> None:
        from saga_actors.journal import open_journal
        from saga_actors.ray.host_count import current_hosts
        from saga_actors.ray.metrics import RayMetrics
        from saga_actors.services.registry import Registry

        configure_logging("registry", config.log_level)
        settle_gc()

        self.registry = Registry(open_journal(config.journal, create=False),
                                 metrics=RayMetrics(config.namespace),
                                 hosts=lambda: current_hosts(config))
        self._config = config
        self._loop = asyncio.get_running_loop().create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        every = min(self._config.metrics_interval_s, self._config.registry_resync_s)
        since_resync = 0.0
        while True:
            try:
                self.registry.publish()
                since_resync += every
                if since_resync >= self._config.registry_resync_s:
                    self.registry.resync()
                    since_resync = 0.0
            except Exception:
                logger.exception("registry housekeeping failed")
            await asyncio.sleep(every)

    async def ingest(self, batch: list[dict[str, Any]]) -> None:
        self.registry.ingest(batch)

    async def get(self, saga_id: str) -> dict[str, Any]:
        return self.registry.get(saga_id)

    async def list(self, **filters: Any) -> list[dict[str, Any]]:
        return self.registry.list(**filters)

    async def counts(self) -> dict[str, int]:
        return self.registry.counts()

    async def overview(self, **options: Any) -> dict[str, Any]:
        return self.registry.overview(**options)

    async def seq(self, saga_id: str) -> int:
        return self.registry.seq(saga_id)

    async def count_outside(self, saga_type: str, what: str) -> None:
        self.registry.count_outside(saga_type, what)

    async def outside_events(self) -> dict[str, dict[str, int]]:
        return self.registry.outside_events()

    async def saga_input(self, saga_id: str) -> dict[str, Any]:
        return self.registry.saga_input(saga_id)

    def __repr__(self) -> str:
        return f"Registry({REGISTRY_ACTOR_NAME})"


SupervisorActor = ray.remote(SupervisorActorImpl)
RegistryActor = ray.remote(RegistryActorImpl)


def ensure_services(config: RuntimeConfig) -> tuple[Any, Any]:
    """Start (or find) the supervisor and the registry in the runtime's namespace."""
    from saga_actors.ray.definitions import put_runtime_info
    from saga_actors.ray.gateway import get_riding_restarts
    from saga_actors.ray.host_count import current_hosts, publish_hosts

    put_runtime_info(config)
    if config.cpus_per_host is not None:  # hosts="auto": the count every process reads
        publish_hosts(config, current_hosts(config, fresh=True))
    registry = RegistryActor.options(
        name=REGISTRY_ACTOR_NAME, namespace=config.namespace, **SERVICE, **where(config)
    ).remote(config)
    supervisor = SupervisorActor.options(
        name=SUPERVISOR_ACTOR_NAME, namespace=config.namespace, **SERVICE, **where(config)
    ).remote(config)
    # (asked again while one restarts: a service being restarted must not fail a caller)
    get_riding_restarts(lambda: [registry.counts.remote(), supervisor.status.remote()])
    return supervisor, registry


def find_services(namespace: str) -> tuple[Any | None, Any | None]:
    """The supervisor and registry if they run in ``namespace`` (never starts them)."""
    from saga_actors.ray.gateway import get_actor

    return get_actor(SUPERVISOR_ACTOR_NAME, namespace), get_actor(REGISTRY_ACTOR_NAME, namespace)
