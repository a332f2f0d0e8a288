"""Participant actors: a :class:`~saga_actors.participant.base.Participant` subclass as a
named, detached Ray actor ``participant:<name>``, deployed and waited for."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ray

from saga_actors.constants import (
    participant_actor_name,
)
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
                 recycle_after: int = 0, **kwargs: Any) -> None:
        configure_logging("participant", log_level)
        settle_gc()
        super().__init__(*args, **kwargs)
        if namespace:  # after the subclass's own __init__, whatever its signature
            self.use_definitions(_lazy_lookup(namespace))
        self._recycler = Recycler(f"participant {self.participant_name}",  # type: ignore[attr-defined]
                                  recycle_after, busy=self.busy)  # type: ignore[attr-defined]

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
        **SERVICE, **where(config, spread=("participant", index)),
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
