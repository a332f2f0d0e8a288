"""The ONE place Ray actor classes and their options are made.

Actors are thin shells around plain classes: :class:`SagaActor` wraps
:class:`~saga_actors.engine.orchestration.SagaInstance`, :class:`SupervisorActor` wraps
:class:`~saga_actors.services.supervisor.Supervisor`, :class:`RegistryActor` wraps
:class:`~saga_actors.services.registry.Registry`, and a participant actor wraps a
:class:`~saga_actors.participant.base.Participant` subclass. Names and the namespace come from
:mod:`saga_actors.constants`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ray
from loguru import logger

from saga_actors.constants import (
    REGISTRY_ACTOR_NAME,
    SUPERVISOR_ACTOR_NAME,
    participant_actor_name,
    pool_actor_name,
    saga_actor_name,
)
from saga_actors.logging import configure_logging

# Each actor is a new process that imports this module: what only one kind of actor needs
# is imported in that actor's constructor, so a participant does not load the supervisor,
# nor a saga the registry (about 0.1 s of CPU per actor start on this project's machines).
if TYPE_CHECKING:
    from saga_actors.config import RuntimeConfig
    from saga_actors.model.definition import Saga
    from saga_actors.participant.base import Participant
    from saga_actors.ray.gateway import RayGateway

# Options of the long-lived service actors: named, detached, restarted by Ray forever.
_SERVICE = {"lifetime": "detached", "max_restarts": -1, "num_cpus": 0, "get_if_exists": True}
SPREAD_MEMORY_BYTES = 1 << 20  # what a spread actor asks for, so that Ray places it (_where)
GC_GEN0_THRESHOLD = 10_000  # allocations between young collections (Python's default: 700)


def _settle_gc() -> None:
    """Once an actor has imported what it runs: freeze what exists (Ray's and our modules,
    ~100,000 objects the cyclic GC would otherwise walk again and again) and collect the
    young generation less often. A saga's work allocates many short-lived objects that
    reference counting frees anyway: a host's work at 100 sagas in flight (run in one
    process, measured here) spent ~16% of its CPU in the GC with Python's defaults and
    ~2% with these. Set in our actors only, never in a user's own process."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)


def _where(config: RuntimeConfig, *, spread: tuple[str, int] | None = None) -> dict[str, Any]:
    """Scheduling options of every actor of the runtime: pinned to ``config.pin_node_id``
    (hard: a pinned actor waits for its node rather than run without its files). Else the
    long-lived pooled ones (``spread=(kind, index)``: participants, hosts, buses) each get
    a node of their own, round-robin over the alive nodes (:mod:`saga_actors.services.spread`;
    soft: Ray restarts one whose node died on another), so that losing a node takes down
    only its share of them."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if config.pin_node_id:
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(config.pin_node_id,
                                                                      soft=False)}
    if spread is None:
        return {}
    from saga_actors.services.spread import spread_node

    node = spread_node((n["NodeID"] for n in ray.nodes() if n.get("Alive")), *spread)
    if node is None:
        return {"scheduling_strategy": "SPREAD"}
    # an actor that asks for no resource at all is put on a random node whatever its
    # strategy (ray-project/ray#25360; seen here: two of six soft affinities missed); a
    # token of memory makes Ray follow the affinity
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True),
            "memory": SPREAD_MEMORY_BYTES}


# --- recycling ------------------------------------------------------------------------

DRAIN_S = 1.0  # a recycling process waits at most this long for its calls in flight
DRAIN_POLL_S = 0.01  # ... looking this often whether they are done
COUNT_SENT_EVERY_S = 1.0  # a host adds up the Ray tasks it sent (for its recycler) this often


class Recycler:
    """Restarts this actor's process once it has run (or sent) ``after`` Ray tasks: Ray
    keeps per-task-name state in a process for as long as it lives, and every step call is
    named for the dashboard (see ``RuntimeConfig.recycle_after_tasks``). It waits up to
    ``DRAIN_S`` for ``busy()`` to be false, then exits; Ray restarts the actor (its
    ``max_restarts`` is unbounded), and whatever was cut short is sent again with the same
    key by its caller, or resumed from the journal."""

    def __init__(self, what: str, after: int, busy: Any = lambda: False) -> None:
        self.what = what
        self.after = after
        self.busy = busy
        self.done = 0
        self.exiting = False

    def count(self, n: int = 1) -> None:
        if not self.after or self.exiting:
            return
        self.done += n
        if self.done >= self.after:
            self.exiting = True
            asyncio.get_running_loop().create_task(self._exit())

    async def _exit(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_S
        while self.busy() and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        logger.info("{} ran {} Ray tasks: restarting its process to give back the memory "
                    "Ray keeps per task name", self.what, self.done)
        with contextlib.suppress(Exception):
            logger.complete()
        os._exit(1)  # not exit_actor(): an unexpected exit is what Ray restarts


# --- participants ---------------------------------------------------------------------


def _gateway(config: RuntimeConfig, *, batch: bool = False) -> RayGateway:
    from saga_actors.ray.gateway import RayGateway

    return RayGateway(config.namespace, name_tasks=config.name_tasks, batch=batch)


class ParticipantShell:
    """Mixin for the Ray actor class made from a :class:`Participant` subclass."""

    def __init__(self, *args: Any, log_level: str = "INFO", namespace: str = "",
                 recycle_after: int = 0, **kwargs: Any) -> None:
        configure_logging("participant", log_level)
        _settle_gc()
        super().__init__(*args, **kwargs)
        if namespace:  # after the subclass's own __init__, whatever its signature
            self.use_definitions(_lazy_lookup(namespace))
        self._recycler = Recycler(f"participant {self.participant_name}",  # type: ignore[attr-defined]
                                  recycle_after, busy=lambda: bool(self._calls))  # type: ignore[attr-defined]

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """:meth:`Participant.handle_call` with plain dicts on the wire (cheaper to ship)."""
        self._recycler.count()
        return (await self.handle_call(request)).model_dump()  # type: ignore[attr-defined]

    async def call_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`Participant.handle_many`: a host's batch, one reply per request."""
        self._recycler.count()
        replies = await self.handle_many(requests)  # type: ignore[attr-defined]
        return [r.model_dump() for r in replies]

    def __repr__(self) -> str:
        return f"Participant({participant_actor_name(self.participant_name)})"  # type: ignore[attr-defined]


def _lazy_lookup(namespace: str) -> Any:
    """The cluster's definitions, for ``ctx.input``: loaded on first use."""
    found: list[Any] = []

    def lookup(name: str, version: int) -> Any:
        if not found:
            from saga_actors.engine.catalog import Catalog
            from saga_actors.ray.definitions import KVDefinitions

            found.append(Catalog(KVDefinitions(namespace)).lookup)
        return found[0](name, version)

    return lookup


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
    index: int = 0,
    **kwargs: Any,
) -> Any:
    """Start (or find) participant actor ``participant:<name>`` and wait until it serves.

    It is detached and restarted by Ray forever; its store survives restarts. ``index``:
    its place among the runtime's participants, which spreads them over the nodes.
    """
    actor = _start_participant(cls, config, name or _name_of(cls), faults, kwargs, index)
    _wait_serving({actor: faults})
    return actor


def deploy_participants(
    classes: Iterable[type[Participant]], config: RuntimeConfig, *,
    faults: dict[str, dict | None] | None = None, index: Any = lambda name: 0,
) -> dict[str, Any]:
    """:func:`deploy_participant` for several at once: their processes start side by side.
    ``faults`` by participant name; ``index(name)``: each one's place among the runtime's
    participants. Returns the actors by participant name."""
    faults = faults or {}
    actors = {}
    for cls in classes:
        name = _name_of(cls)
        actors[name] = _start_participant(cls, config, name, faults.get(name), {}, index(name))
    _wait_serving({a: faults.get(n) for n, a in actors.items()})
    return actors


def _name_of(cls: type[Participant]) -> str:
    return cls.name or cls.__name__.lower()


def _start_participant(cls: type[Participant], config: RuntimeConfig, name: str,
                       faults: dict | None, kwargs: dict[str, Any], index: int) -> Any:
    """``kwargs`` go to the participant's constructor; ``store=`` there overrides the
    runtime's (a participant whose store is on a server of its own)."""
    kwargs = dict(kwargs)
    return participant_actor_class(cls).options(
        name=participant_actor_name(name),
        namespace=config.namespace,
        max_concurrency=config.participant_max_concurrency,
        **_SERVICE, **_where(config, spread=("participant", index)),
    ).remote(
        store=kwargs.pop("store", None) or config.participant_store(name),
        name=name,
        faults=faults,
        log_level=config.log_level,
        namespace=config.namespace,
        recycle_after=config.recycle_after_tasks,
        **kwargs,
    )


def _wait_serving(actors: dict[Any, dict | None]) -> None:
    """Until each actor answers; faults set again on one that was already running."""
    ray.get([a.describe.remote() for a in actors])
    ray.get([a.set_faults.remote(f) for a, f in actors.items() if f is not None])


# --- sagas ----------------------------------------------------------------------------


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
        _settle_gc()
        self._saga_id = saga_id
        self._linger_s = config.saga_linger_s
        journal = open_journal(config.journal, create=False)
        journal.write_alone_when(lambda: True)  # one saga in this process
        record = journal.load(saga_id)
        if record is None:
            raise LookupError(f"saga {saga_id} is not in the journal {config.journal}")
        self._feed = RegistryFeed(config.namespace)
        gateway = _gateway(config)
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
        **_where(config),
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
        _settle_gc()
        self._feed = RegistryFeed(config.namespace)
        self._gateway = _gateway(config, batch=config.batch_calls)
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

    async def ensure(self, saga_ids: list[str]) -> int:
        return self.host.ensure(saga_ids)

    async def cancel(self, saga_id: str, reason: str) -> str | None:
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
        kind = "Bus" if self._placement == "choreography" else "SagaHost"
        return f"{kind}({pool_actor_name(self._placement, self._index)})"


SagaHostActor = ray.remote(SagaHostImpl)


def saga_host(index: int, config: RuntimeConfig, placement: str = "hosted") -> Any:
    """Start (or find) host ``index`` of ``config.hosts`` (``placement="choreography"``: bus
    ``saga_actors:bus:<index>``, as many as hosts)."""
    return SagaHostActor.options(
        name=pool_actor_name(placement, index), namespace=config.namespace,
        max_concurrency=100_000, **_SERVICE, **_where(config, spread=(placement, index)),
    ).remote(index, config.hosts, config, placement)


def saga_hosts(config: RuntimeConfig, placement: str = "hosted") -> list[Any]:
    """Every host (or bus) of the pool, started if need be."""
    hosts = [saga_host(i, config, placement) for i in range(config.hosts)]
    ray.get([h.stats.remote() for h in hosts])
    return hosts


# --- services -------------------------------------------------------------------------


class SupervisorActorImpl:
    """The supervisor in its own detached actor; recovers everything when it (re)starts."""

    def __init__(self, config: RuntimeConfig) -> None:
        from saga_actors.journal import open_journal
        from saga_actors.ray.definitions import cluster_catalog
        from saga_actors.ray.fleet import RayFleet
        from saga_actors.services.supervisor import Supervisor, SupervisorSettings

        configure_logging("supervisor", config.log_level)
        _settle_gc()
        settings = SupervisorSettings.from_config(config)
        fleet = RayFleet(config, spawn=spawn_saga_actor, host=saga_host)
        self.supervisor = Supervisor(open_journal(config.journal, create=False), fleet,
                                     settings=settings, definitions=cluster_catalog(config))
        self._max_signal_bytes = config.max_input_bytes
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

    async def status(self) -> dict[str, Any]:
        return self.supervisor.status()

    def __repr__(self) -> str:
        return f"Supervisor({SUPERVISOR_ACTOR_NAME})"


class RegistryActorImpl:
    """The registry in its own detached actor, re-publishing metrics and resyncing."""

    def __init__(self, config: RuntimeConfig) -> None:
        from saga_actors.journal import open_journal
        from saga_actors.ray.metrics import RayMetrics
        from saga_actors.services.registry import Registry

        configure_logging("registry", config.log_level)
        _settle_gc()

        self.registry = Registry(open_journal(config.journal, create=False),
                                 metrics=RayMetrics(config.namespace), hosts=config.hosts)
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
    from saga_actors.ray.definitions import put_runtime_info

    put_runtime_info(config)
    registry = RegistryActor.options(
        name=REGISTRY_ACTOR_NAME, namespace=config.namespace, **_SERVICE, **_where(config)
    ).remote(config)
    supervisor = SupervisorActor.options(
        name=SUPERVISOR_ACTOR_NAME, namespace=config.namespace, **_SERVICE, **_where(config)
    ).remote(config)
    ray.get([registry.counts.remote(), supervisor.status.remote()])
    return supervisor, registry


def find_services(namespace: str) -> tuple[Any | None, Any | None]:
    """The supervisor and registry if they run in ``namespace`` (never starts them)."""
    from saga_actors.ray.gateway import get_actor

    return get_actor(SUPERVISOR_ACTOR_NAME, namespace), get_actor(REGISTRY_ACTOR_NAME, namespace)
