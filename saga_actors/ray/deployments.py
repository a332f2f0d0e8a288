"""Where a participant's replicas are written down for every process of the cluster: how
many there are (callers route by it) and how to start more (``scale``), in Ray's internal
KV beside the saga definitions. A replica count read here is kept for a moment
(:data:`REPLICAS_TTL_S`); a call that finds its replica gone reads it again."""

from __future__ import annotations

import json
import time
from typing import Any

from saga_actors.ray.definitions import _KV_NAMESPACE

REPLICAS_TTL_S = 2.0  # how stale a caller's replica count may be (a scale reaches it then)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/participant/{name}"


def put_deployment(namespace: str, name: str, spec: dict[str, Any]) -> None:
    """``spec``: ``replicas``, ``cls`` (``module:qualname``), ``kwargs`` and ``options``
    (JSON), what :func:`saga_actors.ray.participants.scale_participant` needs."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(_key(namespace, name), json.dumps(spec),
                                 namespace=_KV_NAMESPACE)


def get_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    from ray.experimental import internal_kv

    if not internal_kv._internal_kv_initialized():
        return None  # (no Ray here: a test's gateway)
    raw = internal_kv._internal_kv_get(_key(namespace, name), namespace=_KV_NAMESPACE)
    return None if raw is None else json.loads(raw)


class ReplicaCounts:
    """A caller's view of each participant's replica count (1 when none is written)."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._seen: dict[str, tuple[float, int]] = {}

    def of(self, name: str) -> int:
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is None or now - seen[0] > REPLICAS_TTL_S:
            spec = get_deployment(self._namespace, name)
            seen = (now, max(1, int((spec or {}).get("replicas", 1))))
            self._seen[name] = seen
        return seen[1]

    def forget(self, name: str) -> None:
        """Read it again at the next call (a replica was found gone)."""
        self._seen.pop(name, None)
