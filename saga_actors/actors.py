"""The ONE place Ray actor classes and their options are made.

Actors are thin shells around plain classes: :class:`SagaActor` wraps
:class:`~saga_actors.instance.SagaInstance`, :class:`SupervisorActor` wraps
:class:`~saga_actors.supervisor.Supervisor`, :class:`RegistryActor` wraps
:class:`~saga_actors.registry.Registry`, and a participant actor wraps a
:class:`~saga_actors.participant.Participant` subclass. Names and the namespace come from
:mod:`saga_actors.constants`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ray
from loguru import logger
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from saga_actors.catalog import Catalog
from saga_actors.config import RuntimeConfig
from saga_actors.constants import (
    REGISTRY_ACTOR_NAME,
    SUPERVISOR_ACTOR_NAME,
    host_actor_name,
    participant_actor_name,
    saga_actor_name,
)
from saga_actors.definition import Saga
from saga_actors.errors import SagaActorLost
from saga_actors.gateway import RayGateway, get_actor
from saga_actors.host import SagaHost, by_shard, shard_of
from saga_actors.instance import FaultPoint, SagaInstance
from saga_actors.journal import open_journal
from saga_actors.logging import configure_logging
from saga_actors.participant import Participant
from saga_actors.records import SagaRecord, Transition
from saga_actors.registry import Registry, RegistryEntry, feed_event
from saga_actors.supervisor import Supervisor, SupervisorSettings

# Options of the long-lived service actors: named, detached, restarted by Ray forever.
_SERVICE = {"lifetime": "detached", "max_restarts": -1, "num_cpus": 0, "get_if_exists": True}


def get_riding_restarts(submit: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """``ray.get(submit())``, asked again while the actor is restarting (a supervisor or
    participant being restarted must not fail a client's call)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(submit(), timeout=timeout_s)
        except ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class KVDefinitions:
    """:class:`~saga_actors.catalog.SharedDefinitions` in Ray's internal KV (the GCS), the
    way Serve checkpoints its controller: every process of the cluster reads it, and it
    outlives any actor's restart (not a whole-cluster restart: then the definitions are
    registered again, and the sagas waiting for them recover). Definitions are code, so
    they travel cloudpickled, as Ray ships classes defined in ``__main__``; the journal
    stays JSON."""

    def __init__(self, namespace: str) -> None:
        self._prefix = f"{namespace}/definition/"

    def _key(self, name: str, version: int) -> str:
        return f"{self._prefix}{name}/v{version}"

    def put(self, saga: Saga) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(self._key(saga.name, saga.version),
                                     ray.cloudpickle.dumps(saga), namespace=_KV_NAMESPACE)

    def get(self, name: str, version: int) -> Saga | None:
        from ray.experimental import internal_kv

        raw = internal_kv._internal_kv_get(self._key(name, version), namespace=_KV_NAMESPACE)
        return None if raw is None else ray.cloudpickle.loads(raw)


_KV_NAMESPACE = "saga_actors"


def catalog(config: RuntimeConfig) -> Catalog:
    """The definitions catalog of an actor that runs or recovers sagas."""
    return Catalog(KVDefinitions(config.namespace))


# --- participants ---------------------------------------------------------------------


def _gateway(config: RuntimeConfig, *, batch: bool = False) -> RayGateway:
    return RayGateway(config.namespace, name_tasks=config.name_tasks, batch=batch)


class ParticipantShell:
    """Mixin for the Ray actor class made from a :class:`Participant` subclass."""

    def __init__(self, *args: Any, log_level: str = "INFO", **kwargs: Any) -> None:
        configure_logging("participant", log_level)
        super().__init__(*args, **kwargs)

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """:meth:`Participant.handle_call` with plain dicts on the wire (cheaper to ship)."""
        return (await self.handle_call(request)).model_dump()  # type: ignore[attr-defined]

    async def call_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`Participant.handle_many`: a host's batch, one reply per request."""
        replies = await self.handle_many(requests)  # type: ignore[attr-defined]
        return [r.model_dump() for r in replies]

    def __repr__(self) -> str:
        return f"Participant({participant_actor_name(self.participant_name)})"  # type: ignore[attr-defined]


def participant_actor_class(cls: type[Participant]) -> Any:
    """The Ray actor class of a participant type."""
    shell = type(cls.__name__, (ParticipantShell, cls), {"__module__": cls.__module__})
    return ray.remote(shell)


def deploy_participant(
    cls: type[Participant],
    config: RuntimeConfig,
    *,
    name: str | None = None,
    faults: dict | None = None,
    **kwargs: Any,
) -> Any:
    """Start (or find) participant actor ``participant:<name>`` and wait until it serves.

    It is detached and restarted by Ray forever; its store survives restarts.
    """
    actor = _start_participant(cls, config, name or _name_of(cls), faults, kwargs)
    _wait_serving({actor: faults})
    return actor


def deploy_participants(
    classes: Iterable[type[Participant]], config: RuntimeConfig, *,
    faults: dict[str, dict | None] | None = None,
) -> dict[str, Any]:
    """:func:`deploy_participant` for several at once: their processes start side by side.
    ``faults`` by participant name. Returns the actors by participant name."""
    faults = faults or {}
    actors = {}
    for cls in classes:
        name = _name_of(cls)
        actors[name] = _start_participant(cls, config, name, faults.get(name), {})
    _wait_serving({a: faults.get(n) for n, a in actors.items()})
    return actors


def _name_of(cls: type[Participant]) -> str:
    return cls.name or cls.__name__.lower()


def _start_participant(cls: type[Participant], config: RuntimeConfig, name: str,
                       faults: dict | None, kwargs: dict[str, Any]) -> Any:
    return participant_actor_class(cls).options(
        name=participant_actor_name(name),
        namespace=config.namespace,
        max_concurrency=config.participant_max_concurrency,
        **_SERVICE,
    ).remote(
        store_path=str(config.participant_store(name)),
        name=name,
        faults=faults,
        log_level=config.log_level,
        **kwargs,
    )


def _wait_serving(actors: dict[Any, dict | None]) -> None:
    """Until each actor answers; faults set again on one that was already running."""
    ray.get([a.describe.remote() for a in actors])
    ray.get([a.set_faults.remote(f) for a, f in actors.items() if f is not None])


# --- sagas ----------------------------------------------------------------------------


class RegistryFeed:
    """Batches transitions for the registry: at most one Ray call per flush interval,
    carrying the latest entry of each saga and the transitions since the last flush."""

    def __init__(self, namespace: str, *, interval_s: float = 0.2) -> None:
        self._namespace = namespace
        self._interval_s = interval_s
        # saga id -> (latest record, compact events since the last flush); the entry is
        # built once per flush, not once per transition
        self._pending: dict[str, tuple[SagaRecord, list[tuple]]] = {}
        self._registry: Any = None
        self._flusher: asyncio.Task | None = None

    def push(self, record: SagaRecord, transition: Transition) -> None:
        pending = self._pending.get(record.saga_id)
        events = pending[1] if pending else []
        events.append(feed_event(transition))
        self._pending[record.saga_id] = (record, events)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._interval_s)
        await self.flush(wait=False)

    async def flush(self, *, wait: bool) -> None:
        """Send what is pending; a lost batch is repaired by the registry's resync."""
        if not self._pending:
            return
        batch = [{"entry": RegistryEntry.of(record).model_dump(mode="json"), "events": events}
                 for record, events in self._pending.values()]
        self._pending = {}
        if self._registry is None:
            self._registry = get_actor(REGISTRY_ACTOR_NAME, self._namespace)
            if self._registry is None:
                return
        ref = self._registry.ingest.remote(batch)
        if wait:
            try:
                await asyncio.wait_for(asyncio.ensure_future(ref), timeout=2.0)
            except Exception as exc:  # noqa: BLE001 - best effort by design
                logger.debug("registry feed flush failed: {}", exc)


def crash_points(config: RuntimeConfig) -> FaultPoint | None:
    """Exit this process once per saga at each of ``config.crash_points`` (fault
    injection); a marker file in the data folder makes the restarted process go on."""
    points = set(config.crash_points)
    if not points:
        return None

    def at(saga_id: str, point: str) -> None:
        marker = Path(config.data_dir) / "crashed" / f"{saga_id}@{point}"
        if point not in points or marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        logger.bind(saga_id=saga_id).warning("crash point {}: exiting", point)
        os._exit(1)

    return at


class SagaActorImpl:
    """One saga instance in its own Ray actor; resumes from the journal on every start."""

    def __init__(self, definition: Saga, saga_id: str, config: RuntimeConfig) -> None:
        configure_logging("saga", config.log_level)
        self._saga_id = saga_id
        self._linger_s = config.saga_linger_s
        journal = open_journal(config.journal, create=False)
        record = journal.load(saga_id)
        if record is None:
            raise LookupError(f"saga {saga_id} is not in the journal {config.journal}")
        self._feed = RegistryFeed(config.namespace)
        self.instance = SagaInstance(
            definition, record, journal, _gateway(config),
            on_transition=self._feed.push, fault_point=crash_points(config),
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

    async def cancel(self, reason: str) -> bool:
        """Abort and compensate; False once past the pivot or already compensating."""
        return await self.instance.request_cancel(reason)

    async def nudge(self) -> bool:
        """Re-check the deadline now."""
        self.instance.nudge()
        return True

    def __repr__(self) -> str:
        return f"SagaActor({saga_actor_name(self._saga_id)})"


SagaActor = ray.remote(SagaActorImpl)


def spawn_saga_actor(definition: Saga, saga_id: str, config: RuntimeConfig) -> Any:
    """Create (or find) the dedicated actor of ``saga_id``; it starts running at once."""
    return SagaActor.options(
        name=saga_actor_name(saga_id),
        namespace=config.namespace,
        lifetime="detached",
        max_restarts=config.saga_max_restarts,
        max_concurrency=1000,
        num_cpus=0,
        get_if_exists=True,
    ).remote(definition, saga_id, config)


class RayFleet:
    """The supervisor's hands on Ray."""

    def __init__(self, config: RuntimeConfig) -> None:
        self._config = config
        self._hosts: dict[int, Any] = {}

    def spawn(self, definition: Saga, saga_id: str) -> Any:
        return spawn_saga_actor(definition, saga_id, self._config)

    async def watch(self, saga_id: str, handle: Any, running: Callable[[], None]) -> None:
        up = False
        while True:
            try:
                if not up:  # answered once its process is up and the saga loaded
                    await handle.ready.remote()
                    up = True
                    running()
                await handle.watch.remote()
                return
            except ActorUnavailableError:
                await asyncio.sleep(0.2)  # Ray is restarting it: ask again
            except ActorDiedError as exc:
                raise SagaActorLost(saga_id, _death(exc)) from None
            except RayActorError as exc:
                raise SagaActorLost(saga_id, type(exc).__name__) from None

    async def nudge(self, handle: Any, timeout_s: float) -> bool:
        return await self._ask(handle.nudge.remote(), timeout_s, False)

    async def cancel(self, handle: Any, reason: str, timeout_s: float) -> bool:
        return await self._ask(handle.cancel.remote(reason), timeout_s, False)

    def kill(self, handle: Any) -> None:
        ray.kill(handle, no_restart=True)

    async def hosted(self, saga_id: str, method: str, *args: Any) -> Any:
        index = shard_of(saga_id, self._config.hosts)
        return await self._host_call(index, method, saga_id, *args)

    async def ensure_hosted(self, saga_ids: list[str]) -> None:
        groups = by_shard(saga_ids, self._config.hosts)
        await asyncio.gather(*(self._host_call(i, "ensure", ids) for i, ids in groups.items()))

    async def _host_call(self, index: int, method: str, *args: Any) -> Any:
        """Call a host; a host that is gone for good is started again (it recovers its
        shard from the journal) and asked once more."""
        for _ in range(2):
            host = self._hosts.get(index) or self._hosts.setdefault(
                index, saga_host(index, self._config))
            try:
                return await asyncio.wait_for(
                    asyncio.ensure_future(getattr(host, method).remote(*args)), timeout=30.0)
            except ActorDiedError:
                logger.warning("host {} is gone; starting it again", index)
                self._hosts.pop(index, None)
            except (asyncio.TimeoutError, RayActorError) as exc:
                logger.warning("host {} did not answer {}: {}", index, method, exc)
                return None
        return None

    @staticmethod
    async def _ask(ref: Any, timeout_s: float, default: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.ensure_future(ref), timeout=timeout_s)
        except (asyncio.TimeoutError, RayActorError):
            ray.cancel(ref)
            return default


class SagaHostImpl:
    """A pool member for `hosted` placement: thousands of saga instances in one actor."""

    def __init__(self, index: int, count: int, config: RuntimeConfig) -> None:
        configure_logging(f"host{index}", config.log_level)
        self._feed = RegistryFeed(config.namespace)
        self._gateway = _gateway(config, batch=config.batch_calls)
        self.host = SagaHost(
            index, count, open_journal(config.journal, create=False), self._gateway,
            on_transition=self._feed.push, fault_point=crash_points(config),
            restart_budget=config.restart_budget, definitions=catalog(config),
        )
        self._index = index
        asyncio.get_running_loop().call_soon(self.host.recover)

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

    async def ensure(self, saga_ids: list[str]) -> int:
        return self.host.ensure(saga_ids)

    async def cancel(self, saga_id: str, reason: str) -> bool:
        return await self.host.cancel(saga_id, reason)

    async def nudge(self, saga_id: str) -> bool:
        return self.host.nudge(saga_id)

    async def restart(self, saga_id: str) -> bool:
        return self.host.restart(saga_id)

    async def stats(self) -> dict[str, Any]:
        import resource

        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {**self.host.stats(), **self._gateway.sent, "pid": os.getpid(),
                "peak_rss_mb": round(rss_mb, 1)}

    def __repr__(self) -> str:
        return f"SagaHost({host_actor_name(self._index)})"


SagaHostActor = ray.remote(SagaHostImpl)


def saga_host(index: int, config: RuntimeConfig) -> Any:
    """Start (or find) host ``index`` of ``config.hosts``."""
    return SagaHostActor.options(
        name=host_actor_name(index), namespace=config.namespace, max_concurrency=100_000,
        **_SERVICE,
    ).remote(index, config.hosts, config)


def saga_hosts(config: RuntimeConfig) -> list[Any]:
    """Every host of the pool, started if need be."""
    hosts = [saga_host(i, config) for i in range(config.hosts)]
    ray.get([h.stats.remote() for h in hosts])
    return hosts


def _death(exc: ActorDiedError) -> str:
    text = str(exc)
    for marker in ("ray.kill", "exit", "killed", "died"):
        if marker in text:
            return f"actor died ({marker})"
    return "actor died"


# --- services -------------------------------------------------------------------------


class SupervisorActorImpl:
    """The supervisor in its own detached actor; recovers everything when it (re)starts."""

    def __init__(self, config: RuntimeConfig) -> None:
        configure_logging("supervisor", config.log_level)
        settings = SupervisorSettings(
            max_dedicated=config.max_dedicated,
            restart_budget=config.restart_budget,
            stall_grace_s=config.stall_grace_s,
        )
        self.supervisor = Supervisor(open_journal(config.journal, create=False), RayFleet(config),
                                     settings=settings, definitions=catalog(config))
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

    async def retry(self, saga_id: str) -> str:
        return self.supervisor.retry(saga_id)

    async def resolve(self, saga_id: str, note: str) -> None:
        self.supervisor.resolve(saga_id, note)

    async def status(self) -> dict[str, Any]:
        return self.supervisor.status()

    def __repr__(self) -> str:
        return f"Supervisor({SUPERVISOR_ACTOR_NAME})"


class RegistryActorImpl:
    """The registry in its own detached actor, re-publishing metrics and resyncing."""

    def __init__(self, config: RuntimeConfig) -> None:
        configure_logging("registry", config.log_level)
        from saga_actors.metrics import RayMetrics

        self.registry = Registry(open_journal(config.journal, create=False), metrics=RayMetrics(),
                                 hosts=config.hosts)
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

    def __repr__(self) -> str:
        return f"Registry({REGISTRY_ACTOR_NAME})"


SupervisorActor = ray.remote(SupervisorActorImpl)
RegistryActor = ray.remote(RegistryActorImpl)


def ensure_services(config: RuntimeConfig) -> tuple[Any, Any]:
    """Start (or find) the supervisor and the registry in the runtime's namespace."""
    registry = RegistryActor.options(
        name=REGISTRY_ACTOR_NAME, namespace=config.namespace, **_SERVICE
    ).remote(config)
    supervisor = SupervisorActor.options(
        name=SUPERVISOR_ACTOR_NAME, namespace=config.namespace, **_SERVICE
    ).remote(config)
    ray.get([registry.counts.remote(), supervisor.status.remote()])
    return supervisor, registry


def find_services(namespace: str) -> tuple[Any | None, Any | None]:
    """The supervisor and registry if they run in ``namespace`` (never starts them)."""
    return get_actor(SUPERVISOR_ACTOR_NAME, namespace), get_actor(REGISTRY_ACTOR_NAME, namespace)
