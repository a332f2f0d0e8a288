"""How many hosts (and buses) a runtime runs now. A fixed ``hosts`` is that; with
``hosts="auto"`` it follows the cluster, one per ``cpus_per_host`` CPUs of its alive nodes:
the supervisor writes the count in Ray's KV as nodes join and leave, and every process
that routes a saga to its shard reads it there (kept for :data:`HOSTS_TTL_S`)."""

from __future__ import annotations

import time

import ray

from saga_actors.config import RuntimeConfig
from saga_actors.ray.definitions import _KV_NAMESPACE

HOSTS_TTL_S = 1.0
_seen: dict[str, tuple[float, int]] = {}  # namespace -> (when read, count)


def _key(namespace: str) -> str:
    return f"{namespace}/hosts"


def current_hosts(config: RuntimeConfig, *, fresh: bool = False) -> int:
    """The number of hosts now (``config.hosts`` unless they follow the cluster)."""
    if config.cpus_per_host is None:
        return config.hosts
    from ray.experimental import internal_kv

    now = time.monotonic()
    seen = _seen.get(config.namespace)
    if fresh or seen is None or now - seen[0] > HOSTS_TTL_S:
        raw = (internal_kv._internal_kv_get(_key(config.namespace), namespace=_KV_NAMESPACE)
               if internal_kv._internal_kv_initialized() else None)
        count = int(raw) if raw else desired_hosts(config)
        seen = _seen[config.namespace] = (now, count)
    return seen[1]


def desired_hosts(config: RuntimeConfig) -> int:
    """One host per ``cpus_per_host`` CPUs of the alive nodes (at least one)."""
    cpus = ray.cluster_resources().get("CPU", 0.0)
    return max(1, int(cpus // (config.cpus_per_host or 1.0)))


def publish_hosts(config: RuntimeConfig, count: int) -> None:
    """Say the new count to every process (and to the CLI's fallback)."""
    from ray.experimental import internal_kv

    from saga_actors.ray.definitions import put_runtime_info

    internal_kv._internal_kv_put(_key(config.namespace), str(count), namespace=_KV_NAMESPACE)
    _seen[config.namespace] = (time.monotonic(), count)
    put_runtime_info(config, hosts=count)
