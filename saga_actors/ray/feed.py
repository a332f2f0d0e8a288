"""The registry feed: what saga runners tell the registry, batched (one Ray call per
flush interval, whatever the number of transitions)."""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger

from saga_actors.constants import REGISTRY_ACTOR_NAME
from saga_actors.model.records import SagaRecord, Transition
from saga_actors.ray.gateway import get_actor
from saga_actors.services.registry import RegistryEntry, feed_event

FLUSH_EVERY_S = 0.2  # the registry lags a running saga by at most this
LAST_FLUSH_WAIT_S = 2.0  # a finishing actor waits this long for its last batch to land


class RegistryFeed:
    """Batches transitions for the registry: at most one Ray call per flush interval,
    carrying the latest entry of each saga and the transitions since the last flush."""

    def __init__(self, namespace: str, *, interval_s: float = FLUSH_EVERY_S) -> None:
        self._namespace = namespace
        self._interval_s = interval_s
        # saga id -> (latest record, compact events since the last flush); the entry is
        # built once per flush, not once per transition
        self._pending: dict[str, tuple[SagaRecord, list[tuple]]] = {}
        self._registry: Any = None
        self._flusher: asyncio.Task | None = None

    def push(self, record: SagaRecord, transition: Transition) -> None:
        pending = self._pending.get(record.saga_id)
        events = pending[1] if pending else []
        events.append(feed_event(transition))
        self._pending[record.saga_id] = (record, events)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._interval_s)
        await self.flush(wait=False)

    async def flush(self, *, wait: bool) -> None:
        """Send what is pending; a lost batch is repaired by the registry's resync."""
        if not self._pending:
            return
        batch = [{"entry": RegistryEntry.json_of(record), "events": events}
                 for record, events in self._pending.values()]
        self._pending = {}
        if self._registry is None:
            self._registry = get_actor(REGISTRY_ACTOR_NAME, self._namespace)
            if self._registry is None:
                return
        ref = self._registry.ingest.remote(batch)
        if wait:
            try:
                await asyncio.wait_for(asyncio.ensure_future(ref), timeout=LAST_FLUSH_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - best effort by design
                logger.debug("registry feed flush failed: {}", exc)
