"""The ONE place the options of the runtime's Ray actors are set (lifetime, restarts,
resources, where they run), and what every actor's process does at its start and end (the
GC settings, recycling), for the actor shells: :mod:`.participants` (a participant
class), :mod:`.sagas` (a saga instance, a saga host or bus), :mod:`.services` (the
supervisor, the registry). Each is a thin shell around a plain class. Names and the
namespace come from :mod:`saga_actors.constants`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from typing import TYPE_CHECKING, Any

import ray
from loguru import logger

from saga_actors.services.spread import spread_node

# Each actor is a new process that imports this module: what only one kind of actor needs
# is imported in that actor's constructor, so a participant does not load the supervisor,
# nor a saga the registry (about 0.1 s of CPU per actor start on this project's machines).
if TYPE_CHECKING:
    from saga_actors.config import RuntimeConfig
    from saga_actors.ray.gateway import RayGateway

# Options of the long-lived service actors: named, detached, restarted by Ray forever.
SERVICE = {"lifetime": "detached", "max_restarts": -1, "num_cpus": 0, "get_if_exists": True}
SPREAD_MEMORY_BYTES = 1 << 20  # what a spread actor asks for, so that Ray places it (_where)
GC_GEN0_THRESHOLD = 10_000  # allocations between young collections (Python's default: 700)


def settle_gc() -> None:
    """Once an actor has imported what it runs: freeze what exists (Ray's and our modules,
    ~100,000 objects the cyclic GC would otherwise walk again and again) and collect the
    young generation less often. A saga's work allocates many short-lived objects that
    reference counting frees anyway: a host's work at 100 sagas in flight (run in one
    process, measured here) spent ~16% of its CPU in the GC with Python's defaults and
    ~2% with these. Set in our actors only, never in a user's own process."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)


def where(config: RuntimeConfig, *, spread: tuple[str, int] | None = None) -> dict[str, Any]:
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
    # (spread_node is imported with this module, not here: a job's driver that imports
    # while it deploys may find its working dir being unpacked again by another node that
    # shares its disk, as the nodes of a test cluster on one machine do)
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


def make_gateway(config: RuntimeConfig, *, batch: bool = False) -> RayGateway:
    """The participant gateway of a saga actor or host, from the runtime's settings."""
    from saga_actors.ray.gateway import RayGateway

    return RayGateway(config.namespace, name_tasks=config.name_tasks, batch=batch)
