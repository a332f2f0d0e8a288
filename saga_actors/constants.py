"""Documented names: the Ray namespace and how every actor is named in it."""

from __future__ import annotations

import zlib

DEFAULT_NAMESPACE = "saga_actors"
SAGA_ACTOR_PREFIX = "saga:"
PARTICIPANT_ACTOR_PREFIX = "participant:"
SUPERVISOR_ACTOR_NAME = "saga_actors:supervisor"
REGISTRY_ACTOR_NAME = "saga_actors:registry"
HOST_ACTOR_PREFIX = "saga_actors:host:"
BUS_ACTOR_PREFIX = "saga_actors:bus:"
# placements whose sagas run in a pool of long-lived actors, sharded by saga id
POOLED = ("hosted", "choreography")

# how long an operator's call (cancel, retry, resolve) waits for the supervisor: longer
# than the supervisor's own wait for a saga's actor or host (runner_answer_timeout_s, 30 s)
OPERATOR_CALL_TIMEOUT_S = 60.0
# the CLI while a service's node is down (Ray takes ~16 s by default to declare a node dead,
# then restarts the service elsewhere): a registry that does not answer within this, the
# CLI answers from the journal; a supervisor that does not, it asks again every
# SERVICE_RETRY_S for up to SERVICE_WAIT_S
REGISTRY_READ_TIMEOUT_S = 10.0
SERVICE_WAIT_S = 90.0
SERVICE_RETRY_S = 2.0


def saga_actor_name(saga_id: str) -> str:
    """``saga:<saga_id>``."""
    return f"{SAGA_ACTOR_PREFIX}{saga_id}"


def participant_actor_name(name: str, replica: int = 0) -> str:
    """``participant:<name>`` (its first replica), ``participant:<name>:<i>`` (the others)."""
    base = f"{PARTICIPANT_ACTOR_PREFIX}{name}"
    return base if replica == 0 else f"{base}:{replica}"


def host_actor_name(index: int) -> str:
    """``saga_actors:host:<index>``: a SagaHost of the `hosted` placement."""
    return f"{HOST_ACTOR_PREFIX}{index}"


def bus_actor_name(index: int) -> str:
    """``saga_actors:bus:<index>``: an event bus actor of choreographed sagas."""
    return f"{BUS_ACTOR_PREFIX}{index}"


def pool_actor_name(placement: str, index: int) -> str:
    """The name of actor ``index`` of the pool that runs ``placement``'s sagas."""
    return bus_actor_name(index) if placement == "choreography" else host_actor_name(index)


def shard_of(saga_id: str, hosts: int) -> int:
    """Which of ``hosts`` hosts runs hosted saga ``saga_id`` (stable across processes)."""
    return zlib.crc32(saga_id.encode()) % hosts
