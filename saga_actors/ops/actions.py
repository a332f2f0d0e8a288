"""What an operator can do to a saga, said once for the command line and the console: each
action answers what happened in a sentence, or is refused with the reason (the same words
in both)."""

from __future__ import annotations

import uuid
from typing import Any

import click

from saga_actors.errors import SagaError, SagaNotFoundError
from saga_actors.ops.cluster import Cluster


def get_saga(cluster: Cluster, saga_id: str) -> dict[str, Any]:
    """One saga as ``show`` presents it; a clear error if there is none."""
    try:
        return cluster.query("get", saga_id)
    except SagaNotFoundError:
        raise click.ClickException(f"no saga with id {saga_id!r}") from None


def cancel(cluster: Cluster, saga_id: str, reason: str) -> str:
    """Abort a running saga: it compensates and ends FAILED."""
    get_saga(cluster, saga_id)
    refusal = _operator(cluster.act, "cancel_refusal", saga_id, reason)
    if refusal:
        raise click.ClickException(f"saga {saga_id} cannot be cancelled: {refusal}")
    return f"cancel requested: {saga_id} will compensate and end FAILED"


def signal(cluster: Cluster, saga_id: str, name: str, payload: Any,
           signal_id: str | None = None) -> str:
    """Send the signal ``name`` (its payload checked against the wait's model)."""
    get_saga(cluster, saga_id)
    signal_id = signal_id or uuid.uuid4().hex
    fresh = _operator(cluster.act, "signal", saga_id, name, payload, signal_id)
    return (f"signal {name!r} {'sent' if fresh else 'was sent before'}: {saga_id} "
            f"(signal id {signal_id})")


def publish(cluster: Cluster, choreography: str, event_type: str, payload: Any, *,
            saga_id: str | None, event_id: str | None, version: int | None) -> str:
    """Send an event from outside into a running choreographed saga (by id, or found by
    the event's correlation field)."""
    event_id = event_id or uuid.uuid4().hex
    found, fresh = _operator(cluster.act, "publish", choreography, version, event_type,
                             payload, event_id, saga_id)
    return (f"event {event_type!r} {'taken' if fresh else 'was sent before'}: {found} "
            f"(event id {event_id})")


def scale(cluster: Cluster, participant: str, replicas: int) -> str:
    """Change how many replicas of a deployed participant run."""
    from saga_actors.ray.participants import scale_participant

    cluster.services()  # attached (its errors are the CLI's)
    before = _operator(scale_participant, cluster.namespace, participant, replicas)
    return f"{participant}: {before} -> {replicas} replica(s)"


def retry(cluster: Cluster, saga_id: str) -> str:
    """Re-drive a STUCK saga's pending work."""
    get_saga(cluster, saga_id)
    resumes = _operator(cluster.act, "retry", saga_id)
    return f"retrying {saga_id}: it resumes in {resumes}"


def resolve(cluster: Cluster, saga_id: str, note: str) -> str:
    """Mark a STUCK saga resolved by hand: it ends FAILED with the note in its history."""
    get_saga(cluster, saga_id)
    _operator(cluster.act, "resolve", saga_id, note)
    return f"resolved {saga_id}"


def _operator(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except SagaError as exc:  # RunnerUnavailableError too: the host did not answer
        raise click.ClickException(str(exc)) from None
