"""Saga definitions shared by every process of a Ray cluster, in Ray's internal KV; and
where the runtime's journal is, for operators' tools when its services do not answer."""

from __future__ import annotations

import json
from typing import Any

import ray

from saga_actors.config import RuntimeConfig
from saga_actors.engine.catalog import Catalog
from saga_actors.model.definition import Saga


class KVDefinitions:
    """:class:`~saga_actors.engine.catalog.SharedDefinitions` in Ray's internal KV (the GCS), the
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


def cluster_catalog(config: RuntimeConfig) -> Catalog:
    """The definitions catalog of an actor that runs or recovers sagas."""
    return Catalog(KVDefinitions(config.namespace))


def put_runtime_info(config: RuntimeConfig, hosts: int | None = None) -> None:
    """Say, in the GCS, where the namespace's journal is and how many hosts it runs: the
    CLI reads the journal directly while the registry is restarting (a node loss)."""
    from ray.experimental import internal_kv

    info = {"journal": config.journal, "hosts": hosts or config.hosts}
    internal_kv._internal_kv_put(f"{config.namespace}/runtime", json.dumps(info),
                                 namespace=_KV_NAMESPACE)


def runtime_info(namespace: str) -> dict[str, Any] | None:
    """What :func:`put_runtime_info` said for ``namespace`` (None: nothing, or no answer)."""
    from ray.experimental import internal_kv

    try:
        raw = internal_kv._internal_kv_get(f"{namespace}/runtime", namespace=_KV_NAMESPACE)
    except Exception:  # the GCS itself is out of reach: the caller says so
        return None
    return None if raw is None else json.loads(raw)
