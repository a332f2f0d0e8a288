"""How a runtime reaches Ray: attach to a cluster (or start an embedded one), fail fast
when nothing listens, and pin actors to the node that holds local files."""

from __future__ import annotations

import socket
from typing import Any

import ray
from loguru import logger

from saga_actors.config import RuntimeConfig
from saga_actors.constants import participant_actor_name
from saga_actors.engine.startable import check_handlers
from saga_actors.errors import ClusterUnreachableError, UnknownParticipantError
from saga_actors.model.choreography import Choreography
from saga_actors.model.definition import Saga
from saga_actors.ray.gateway import get_riding_restarts


def connect(config: RuntimeConfig, address: str | None = None, **init_kwargs: Any) -> None:
    """Attach to Ray at ``address``, or start an embedded local Ray when it is None."""
    if ray.is_initialized():
        return
    ray.init(address=address, namespace=config.namespace, **init_kwargs)


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast with :class:`ClusterUnreachableError` when nothing listens at a
    ``HOST:PORT`` (or ``ray://HOST:PORT``) address; Ray itself retries for a minute."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep:
        return  # "auto", "local": Ray resolves those itself
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except ValueError:
        raise ClusterUnreachableError(address, f"{port!r} is not a port number") from None
    except OSError as exc:
        raise ClusterUnreachableError(address, exc.strerror or str(exc)) from None


def pin_to_local_files(config: RuntimeConfig) -> RuntimeConfig:
    """On a multi-node cluster, pin the runtime's actors to this driver's node while any of
    its files lives on a local disk (the participants' SQLite stores, an SQLite journal).
    With the journal and the stores in PostgreSQL, or on one node, nothing changes."""
    files = [what for what, local in (
        ("the participants' SQLite stores", not config.store_url),
        ("the SQLite journal", config.journal.startswith("sqlite"))) if local]
    if config.pin_node_id or not files:
        return config
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) < 2:
        return config
    node = ray.get_runtime_context().get_node_id()
    logger.warning("{} Ray nodes: every saga_actors actor is pinned to node {} (this "
                   "driver's), which holds {}; put them in PostgreSQL (journal_url, "
                   "store_url) to let actors run on any node", len(alive), node,
                   " and ".join(files))
    return config.model_copy(update={"pin_node_id": node})


def check_participants(saga: Saga | Choreography, namespace: str,
                       checked: set[tuple[str, str, str]]) -> None:
    """Each participant ``saga`` calls runs (an actor in ``namespace``) and has each method
    in its role; what passed is added to ``checked`` and not asked again."""
    roles_of = saga.roles()
    for participant in saga.participants:
        roles = roles_of.get(participant, set())
        if all((participant, m, r) in checked for m, r in roles):
            continue
        try:
            actor = ray.get_actor(participant_actor_name(participant), namespace)
        except ValueError:
            raise UnknownParticipantError(
                participant,
                reason=f"no actor {participant_actor_name(participant)!r} in namespace "
                f"{namespace!r}",
            ) from None
        check_handlers(saga, participant, get_riding_restarts(actor.describe.remote))
        checked.update((participant, m, r) for m, r in roles)
