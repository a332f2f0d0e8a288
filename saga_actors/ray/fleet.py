"""The supervisor's hands on Ray: :class:`RayFleet` implements
:class:`~saga_actors.services.supervisor.Fleet` (spawn, watch, nudge, cancel, kill saga actors;
call hosts). The actors themselves are made in :mod:`saga_actors.ray.actors`, which hands the
fleet its two factories."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import ray
from loguru import logger
from ray.exceptions import ActorDiedError, RayActorError

from saga_actors.config import RuntimeConfig
from saga_actors.constants import (
    POOLED,
    participant_actor_name,
    pool_actor_name,
    saga_actor_name,
    shard_of,
)
from saga_actors.errors import RunnerUnavailableError, SagaActorLost
from saga_actors.model.definition import Saga
from saga_actors.ray.gateway import get_actor, ride_restarts
from saga_actors.ray.host_count import current_hosts
from saga_actors.services.host import by_shard

SpawnSaga = Callable[[Saga, str, RuntimeConfig, dict[str, Any]], Any]
StartHost = Callable[[int, RuntimeConfig, str], Any]
HANDLES_TTL_S = 10.0  # how long the supervisor trusts a participant handle it looked up


class RayFleet:
    """The supervisor's hands on Ray."""

    def __init__(self, config: RuntimeConfig, *, spawn: SpawnSaga, host: StartHost) -> None:
        self._config = config
        self._spawn = spawn
        self._start_host = host
        self._hosts: dict[tuple[str, int], Any] = {}
        self._participants: dict[str, tuple[Any, float]] = {}  # name -> (handle, found at)

    def spawn(self, definition: Saga, saga_id: str) -> Any:
        """Start the saga's actor, handing it its participants' handles: a new process
        would otherwise ask the GCS for each by name (measured here at 10 dedicated sagas
        in flight: ~90 ms for three)."""
        return self._spawn(definition, saga_id, self._config,
                           self._participant_handles(definition))

    def _participant_handles(self, definition: Saga) -> dict[str, Any]:
        now = time.monotonic()
        handles = {}
        for name in definition.participants:
            handle, found_at = self._participants.get(name, (None, 0.0))
            if handle is None or now - found_at > HANDLES_TTL_S:
                handle = get_actor(participant_actor_name(name), self._config.namespace)
                if handle is None:
                    continue  # the saga actor looks for it itself, and says so
                self._participants[name] = (handle, now)
            handles[name] = handle
        return handles

    async def watch(self, saga_id: str, handle: Any, running: Callable[[], None]) -> None:
        try:
            await ride_restarts(lambda: handle.ready.remote())  # up, and its saga loaded
            running()
            await ride_restarts(lambda: handle.watch.remote())  # its saga ended
        except ActorDiedError as exc:
            raise SagaActorLost(saga_id, _death(exc)) from None
        except RayActorError as exc:
            raise SagaActorLost(saga_id, type(exc).__name__) from None

    async def nudge(self, handle: Any, timeout_s: float) -> bool:
        try:
            return await self._ask(handle.nudge.remote(), timeout_s)
        except (TimeoutError, RayActorError):
            return False  # the supervisor kills an actor that will not answer its deadline

    async def cancel(self, saga_id: str, handle: Any, reason: str,
                     timeout_s: float) -> str | None:
        try:
            return await self._ask(handle.cancel.remote(reason), timeout_s)
        except (TimeoutError, RayActorError) as exc:
            raise RunnerUnavailableError(saga_id, saga_actor_name(saga_id), "cancel",
                                         _why(exc, timeout_s)) from None

    def kill(self, handle: Any) -> None:
        ray.kill(handle, no_restart=True)

    async def hosted(self, saga_id: str, method: str, *args: Any,
                     placement: str = "hosted") -> Any:
        index = shard_of(saga_id, current_hosts(self._config))
        try:
            return await self._host_call(placement, index, method, saga_id, *args)
        except (TimeoutError, RayActorError) as exc:
            raise RunnerUnavailableError(saga_id, pool_actor_name(placement, index), method,
                                         _why(exc, self._config.runner_answer_timeout_s)) \
                from None

    async def follow_cluster(self) -> int | None:
        """With hosts="auto": the count of hosts (and buses) for the cluster as it is now;
        when it changed, the new count is published, hosts are started or stopped, and
        each host gives up and takes sagas by the new shards. Returns the new count."""
        from saga_actors.ray.host_count import desired_hosts, publish_hosts
        from saga_actors.ray.sagas import saga_host

        config = self._config
        if config.cpus_per_host is None:
            return None
        have, want = current_hosts(config, fresh=True), desired_hosts(config)
        if want == have:
            return None
        logger.warning("the cluster has {} CPUs: {} -> {} hosts and buses",
                       ray.cluster_resources().get("CPU", 0), have, want)
        publish_hosts(config, want)
        for placement in POOLED:
            for i in range(want, have):  # fewer: stop the last ones first
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(pool_actor_name(placement, i), config.namespace),
                             no_restart=True)
            kept = [get_actor(pool_actor_name(placement, i), config.namespace)
                    for i in range(min(have, want))]
            await asyncio.gather(*(h.resize.remote(want) for h in kept if h is not None),
                                 return_exceptions=True)
            for i in range(have, want):  # more: each recovers its shard as it starts
                saga_host(i, config, placement)
        return want

    async def ensure_hosted(self, saga_ids: list[str], placement: str = "hosted") -> None:
        groups = by_shard(saga_ids, current_hosts(self._config))
        outcomes = await asyncio.gather(*(self._host_call(placement, i, "ensure", ids)
                                          for i, ids in groups.items()), return_exceptions=True)
        for index, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # the next pass asks again
                logger.warning("{} did not take its sagas: {}",
                               pool_actor_name(placement, index),
                               _why(outcome, self._config.runner_answer_timeout_s))

    async def _host_call(self, placement: str, index: int, method: str, *args: Any) -> Any:
        """Call a host (or bus); one that is gone for good is started again (it recovers
        its shard from the journal) and asked once more. Raises
        :class:`asyncio.TimeoutError` or :class:`RayActorError` when it does not answer."""
        key = (placement, index)
        for attempt in (1, 2):
            host = self._hosts.get(key) or self._hosts.setdefault(
                key, self._start_host(index, self._config, placement))
            try:
                return await self._ask(getattr(host, method).remote(*args),
                                       self._config.runner_answer_timeout_s)
            except ActorDiedError:
                logger.warning("{} is gone; starting it again", pool_actor_name(placement, index))
                self._hosts.pop(key, None)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _ask(ref: Any, timeout_s: float) -> Any:
        """The answer to ``ref``; the call is cancelled if it does not come in time."""
        try:
            return await asyncio.wait_for(asyncio.ensure_future(ref), timeout=timeout_s)
        except TimeoutError:
            ray.cancel(ref)
            raise


def _why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {timeout_s:g}s"
    return type(exc).__name__


def _death(exc: ActorDiedError) -> str:
    text = str(exc)
    for marker in ("ray.kill", "exit", "killed", "died"):
        if marker in text:
            return f"actor died ({marker})"
    return "actor died"
