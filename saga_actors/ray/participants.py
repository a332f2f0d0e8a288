"""Participant actors: a :class:`~saga_actors.participant.base.Participant` subclass as
named, detached Ray actors ``participant:<name>`` (and ``participant:<name>:<i>``, its other
replicas, sharing its store), deployed with what they ask Ray for, waited for, and scaled."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ray

from saga_actors.constants import (
    participant_actor_name,
)
from saga_actors.errors import ParticipantPlacementError
from saga_actors.logging import configure_logging
from saga_actors.ray.actors import (
    SERVICE,
    Recycler,
    settle_gc,
    where,
)

# Each actor is a new process that imports this module: what only one kind of actor needs
# is imported in that actor's constructor (about 0.1 s of CPU per actor start here).
if TYPE_CHECKING:
    from saga_actors.config import RuntimeConfig
    from saga_actors.participant.base import Participant


class ParticipantShell:
    """Mixin for the Ray actor class made from a :class:`Participant` subclass."""

    def __init__(self, *args: Any, log_level: str = "INFO", namespace: str = "",
                 recycle_after: int = 0, replica: int = 0, **kwargs: Any) -> None:
        configure_logging("participant", log_level)
        settle_gc()
        super().__init__(*args, **kwargs)
        self._replica = replica
        self._served = 0  # requests answered by this actor (since it started)
        self._namespace = namespace
        self._metric: Any = None
        if namespace:  # after the subclass's own __init__, whatever its signature
            self.use_definitions(_lazy_lookup(namespace))
        self._recycler = Recycler(f"participant {self.participant_name}",  # type: ignore[attr-defined]
                                  recycle_after, busy=self.busy)  # type: ignore[attr-defined]

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """:meth:`Participant.handle_call` with plain dicts on the wire (cheaper to ship)."""
        self._recycler.count()
        self._count(1)
        reply = (await self.handle_call(request)).model_dump()  # type: ignore[attr-defined]
        reply["replica"] = self._replica
        return reply

    async def call_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`Participant.handle_many`: a host's batch, one reply per request."""
        self._recycler.count()
        self._count(len(requests))
        replies = await self.handle_many(requests)  # type: ignore[attr-defined]
        return [{**r.model_dump(), "replica": self._replica} for r in replies]

    def _count(self, n: int) -> None:
        """Requests served: here, and in the metric ``saga_actors_participant_requests_total``
        by participant and replica."""
        self._served += n
        if self._metric is None:
            from ray.util.metrics import Counter

            self._metric = Counter(
                "saga_actors_participant_requests_total",
                "Requests a participant's replica served (actions and compensations).",
                tag_keys=("namespace", "participant", "replica"))
            self._tags = {"namespace": self._namespace,
                          "participant": self.participant_name,  # type: ignore[attr-defined]
                          "replica": str(self._replica)}
        self._metric.inc(n, tags=self._tags)

    def replica(self) -> int:
        """Which of the participant's replicas this actor is."""
        return self._replica

    def served(self) -> dict[str, Any]:
        """This replica, its node, and the requests it answered since it started."""
        return {"replica": self._replica, "requests": self._served,
                "node": ray.get_runtime_context().get_node_id()}

    def __repr__(self) -> str:
        # (also for an actor whose construction failed, as Ray formats its error)
        name = participant_actor_name(getattr(self, "participant_name", type(self).__name__),
                                      getattr(self, "_replica", 0))
        return f"Participant({name})"


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


PLACEMENT = ("num_cpus", "num_gpus", "memory", "resources", "runtime_env", "label_selector")
PLACEMENT_WAIT_S = 120.0  # one that asks Ray for resources and no node starts within this:
# an error, not a hang (one that asks for nothing waits as long as its start takes: a cold
# node unpacking a job's working dir can take more than a minute)
DRAIN_S = 2.5  # scaling down: callers' replica counts go stale this long (REPLICAS_TTL_S+)


def deploy_participant(
    cls: type[Participant],
    config: RuntimeConfig,
    *,
    name: str | None = None,
    faults: dict | None = None,
    index: int = 0,
    replicas: int | None = None,
    placement: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Start (or find) participant ``name``'s actors and wait until they serve; returns
    the first replica's. ``replicas`` and ``placement`` (what its actors ask Ray for: see
    :data:`PLACEMENT`) override the class's attributes.

    They are detached and restarted by Ray forever; the store survives restarts. ``index``:
    its place among the runtime's participants, which spreads them over the nodes. One
    that no node can hold is :class:`ParticipantPlacementError`, before anything starts.
    """
    name = name or _name_of(cls)
    count = replicas if replicas is not None else cls.replicas
    if not isinstance(count, int) or count < 1:
        raise ParticipantPlacementError(name, f"replicas must be a whole number >= 1, not "
                                        f"{count!r}")
    options = placement_of(cls, placement or {})
    check_placeable(name, options)
    actors = [_start_participant(cls, config, name, faults, kwargs, index, replica=i,
                                 options=options) for i in range(count)]
    _wait_serving(name, {a: faults for a in actors}, patient=not options)
    _write_down(config, cls, name, count, kwargs, options)
    return actors[0]


def deploy_participants(
    classes: Iterable[type[Participant]], config: RuntimeConfig, *,
    faults: dict[str, dict | None] | None = None, index: Any = lambda name: 0,
) -> dict[str, Any]:
    """:func:`deploy_participant` for several at once: their processes start side by side.
    ``faults`` by participant name; ``index(name)``: each one's place among the runtime's
    participants. Returns the first replica's actor by participant name."""
    faults = faults or {}
    started: list[tuple[type[Participant], str, dict[str, Any], list[Any]]] = []
    for cls in classes:
        name = _name_of(cls)
        options = placement_of(cls, {})
        check_placeable(name, options)
        started.append((cls, name, options, [
            _start_participant(cls, config, name, faults.get(name), {}, index(name),
                               replica=i, options=options)
            for i in range(max(1, cls.replicas))]))
    for cls, name, options, actors in started:
        _wait_serving(name, {a: faults.get(name) for a in actors}, patient=not options)
        _write_down(config, cls, name, len(actors), {}, options)
    return {name: actors[0] for _, name, _, actors in started}


def scale_participant(config: RuntimeConfig | str, name: str, replicas: int,
                      cls: type[Participant] | None = None) -> int:
    """Run ``replicas`` actors of participant ``name`` (deployed before, by any process);
    returns how many ran before. More: started, then callers route to them. Fewer: callers
    are told first, and the extra replicas are stopped once the callers' view is fresh; a
    call they still had is sent again by its saga, with the same key, to a replica that
    stays, and the shared store applies it once. ``cls``: the participant's class, where it
    cannot be imported by the name it was deployed from (defined in ``__main__``)."""
    from saga_actors.config import RuntimeConfig
    from saga_actors.ray.deployments import get_deployment, put_deployment

    namespace = config if isinstance(config, str) else config.namespace
    spec = get_deployment(namespace, name)
    if spec is None:
        raise ParticipantPlacementError(name, f"it was never deployed in namespace "
                                        f"{namespace!r}")
    if isinstance(config, str):  # (an operator's tool: the deployer's settings)
        config = RuntimeConfig(**spec["config"])
    if not isinstance(replicas, int) or replicas < 1:
        raise ParticipantPlacementError(name, f"replicas must be a whole number >= 1, not "
                                        f"{replicas!r}")
    before = int(spec["replicas"])
    if replicas > before:
        cls = cls or _import_class(name, spec["cls"])
        actors = [_start_participant(cls, config, name, None, dict(spec["kwargs"]), 0,
                                     replica=i, options=spec["options"])
                  for i in range(before, replicas)]
        _wait_serving(name, dict.fromkeys(actors), patient=not spec["options"])
    put_deployment(config.namespace, name, {**spec, "replicas": replicas})
    if replicas < before:
        time.sleep(DRAIN_S)  # callers read the new count within REPLICAS_TTL_S
        for i in range(replicas, before):
            with contextlib.suppress(ValueError):  # gone already
                ray.kill(ray.get_actor(participant_actor_name(name, i), config.namespace),
                         no_restart=True)
    return before


def placement_of(cls: type[Participant], given: dict[str, Any]) -> dict[str, Any]:
    """What the participant's actors ask Ray for: ``given`` over the class's attributes;
    unset ones left out (Ray's defaults)."""
    unknown = set(given) - set(PLACEMENT)
    if unknown:
        raise ParticipantPlacementError(_name_of(cls), f"unknown option {sorted(unknown)} "
                                        f"(known: {', '.join(PLACEMENT)})")
    out = {}
    for key in PLACEMENT:
        value = given.get(key, getattr(cls, key, None))
        if value not in (None, {}):
            out[key] = dict(value) if isinstance(value, dict) else value
    return out


def check_placeable(name: str, options: dict[str, Any]) -> None:
    """:class:`ParticipantPlacementError` if no alive node has, in all, the resources and
    labels ``options`` ask for (a node that has them but is busy: the actor waits)."""
    demand = {**options.get("resources", {})}
    for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(key):
            demand[resource] = options[key]
    labels = options.get("label_selector", {})
    if not demand and not labels:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    for node in nodes:
        have, tags = node.get("Resources", {}), node.get("Labels", {}) or {}
        if all(have.get(k, 0) >= v for k, v in demand.items()) and all(
                tags.get(k) == v for k, v in labels.items()):
            return
    asked = ", ".join([*(f"{k}={v:g}" for k, v in demand.items()),
                       *(f"label {k}={v}" for k, v in labels.items())])
    raise ParticipantPlacementError(name, f"it asks for {asked}, and none of the "
                                    f"{len(nodes)} alive node(s) has that")


def _name_of(cls: type[Participant]) -> str:
    return cls.name or cls.__name__.lower()


def _import_class(name: str, ref: str) -> type[Participant]:
    import importlib

    module, _, qualname = ref.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        return found
    except (ImportError, AttributeError) as exc:
        raise ParticipantPlacementError(name, f"its class {ref} cannot be imported here "
                                        f"({exc}): scale it from the program that deployed "
                                        "it (rt.scale)") from None


def _write_down(config: RuntimeConfig, cls: type[Participant], name: str, replicas: int,
                kwargs: dict[str, Any], options: dict[str, Any]) -> None:
    """The deployment, for callers (the replica count) and for ``scale``."""
    import json

    from saga_actors.ray.deployments import put_deployment

    try:
        json.dumps(kwargs)
    except TypeError:
        kwargs = {}  # (not JSON: scale starts replicas with the class's defaults)
    put_deployment(config.namespace, name, {
        "replicas": replicas, "cls": f"{cls.__module__}:{cls.__qualname__}",
        "kwargs": {"store": config.participant_store(name), **kwargs}, "options": options,
        "config": config.model_dump(mode="json")})


def _start_participant(cls: type[Participant], config: RuntimeConfig, name: str,
                       faults: dict | None, kwargs: dict[str, Any], index: int, *,
                       replica: int = 0, options: dict[str, Any] | None = None) -> Any:
    """``kwargs`` go to the participant's constructor; ``store=`` there overrides the
    runtime's (a participant whose store is on a server of its own)."""
    kwargs = dict(kwargs)
    options = dict(options or {})
    placed = where(config, spread=("participant", index + replica))
    if any(k in options for k in ("resources", "num_gpus", "label_selector")):
        placed.pop("scheduling_strategy", None)  # where Ray finds what it asks for
        placed.pop("memory", None)
    return participant_actor_class(cls).options(
        name=participant_actor_name(name, replica),
        namespace=config.namespace,
        max_concurrency=config.participant_max_concurrency,
        **SERVICE, **{**placed, **options},
    ).remote(
        store=kwargs.pop("store", None) or config.participant_store(name),
        name=name,
        faults=faults,
        log_level=config.log_level,
        namespace=config.namespace,
        recycle_after=config.recycle_after_tasks,
        replica=replica,
        **kwargs,
    )


def _wait_serving(name: str, actors: dict[Any, dict | None], *, patient: bool) -> None:
    """Until each actor answers; faults set again on one that was already running. One
    that asks Ray for resources (not ``patient``) and that no node starts within
    PLACEMENT_WAIT_S is stopped, and said."""
    refs = [a.describe.remote() for a in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs),
                        timeout=None if patient else PLACEMENT_WAIT_S)
    if len(ready) < len(refs):
        for actor, ref in zip(actors, refs, strict=True):
            if ref not in ready:
                ray.kill(actor, no_restart=True)
        raise ParticipantPlacementError(name, f"{len(refs) - len(ready)} of its actor(s) "
                                        f"did not start within {PLACEMENT_WAIT_S:g}s "
                                        "(waiting for resources a busy node has?)")
    ray.get(refs)
    ray.get([a.set_faults.remote(f) for a, f in actors.items() if f is not None])
