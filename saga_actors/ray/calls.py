"""Ray, for what stands above its package (the client, the CLI): calls and their errors,
the cluster's nodes and actors, attaching to a cluster. What is above imports these, never
Ray itself."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import ray

from saga_actors.errors import SagaError
from saga_actors.ray.gateway import get_riding_restarts

RayError = ray.exceptions.RayError
RayActorError = ray.exceptions.RayActorError  # its actor died or is out of reach
RayTaskError = ray.exceptions.RayTaskError  # the actor's method raised (``.cause``)
GetTimeoutError = ray.exceptions.GetTimeoutError


def is_initialized() -> bool:
    return ray.is_initialized()


@contextlib.contextmanager
def _own_errors() -> Iterator[None]:
    """A saga_actors error the actor raised comes back as itself, not wrapped in Ray's
    :data:`RayTaskError`."""
    try:
        yield
    except RayTaskError as exc:
        if isinstance(exc.cause, SagaError):
            raise exc.cause from None
        raise


def get(refs: Any, *, timeout_s: float | None = None) -> Any:
    """The result of a Ray call (or of several); :data:`GetTimeoutError` past ``timeout_s``.
    A saga_actors error the actor raised (a saga not STUCK, a host that did not answer)
    comes back as itself."""
    with _own_errors():
        return ray.get(refs, timeout=timeout_s)


def ask(submit: Callable[[], Any], *, timeout_s: float) -> Any:
    """:func:`get` of ``submit()``, submitted again while Ray restarts the actor
    (:func:`~saga_actors.ray.gateway.get_riding_restarts`: for a request that is safe to
    repeat)."""
    with _own_errors():
        return get_riding_restarts(submit, timeout_s=timeout_s)


def get_ready(refs: list[Any], *, timeout_s: float) -> list[Any]:
    """The results of the calls that are done within ``timeout_s``."""
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    return ray.get(ready)


def attach(address: str, namespace: str) -> None:
    """Attach this process to the cluster at ``address``, quietly (an operator's tool)."""
    if not ray.is_initialized():  # (already attached when run in-process, as in tests)
        ray.init(address=address, namespace=namespace, log_to_driver=False,
                 logging_level="ERROR", configure_logging=False)


def gcs_address() -> str:
    return ray.get_runtime_context().gcs_address


def nodes() -> dict[str, dict[str, Any]]:
    """Every node the cluster knows, by node id."""
    return {n["NodeID"]: n for n in ray.nodes()}


def namespace_actors(namespace: str, limit: int) -> list[Any]:
    """The live actors of ``namespace``, from Ray's state API (which its dashboard serves)."""
    from ray.util.state import list_actors

    return list_actors(address=gcs_address(), limit=limit, raise_on_missing_output=False,
                       filters=[("ray_namespace", "=", namespace), ("state", "!=", "DEAD")])


def session_dir() -> str:
    """The session folder of the cluster this process is attached to."""
    return ray._private.worker._global_node.get_session_dir_path()
