"""Saga definitions by name and version, for every process that runs or recovers sagas.

A saga's definition is code (its input model, its steps), so it cannot live in the journal
(JSON only). The catalog finds it, in this order: registered in this process; in a
:class:`SharedDefinitions` store that every process of the cluster reads (Ray's internal
KV in production, see :mod:`saga_actors.ray.actors`: a definition made in ``__main__`` or inside
a function reaches a host that Ray restarted on any node); imported by the module:attribute
journaled with the saga. A saga whose definition none of them has *waits, visibly*: its
record says what it waits for, and it runs as soon as someone registers the definition.
No Ray here.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Protocol

from loguru import logger

from saga_actors.engine.transitions import advance_async
from saga_actors.errors import DefinitionStoreError, SagaDefinitionError
from saga_actors.journal.base import Journal, JournalConflictError
from saga_actors.model.choreography import Choreography
from saga_actors.model.definition import Saga
from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord
from saga_actors.model.shapes import shape_changes, shape_hash

MISS_TTL_S = 0.5  # a definition not found is looked up again after this (each tick asks)


class SharedDefinitions(Protocol):
    """Definitions shared by every process of the cluster."""

    def put(self, saga: Saga) -> None:
        """Publish ``saga`` under its name and version."""

    def get(self, name: str, version: int) -> Saga | None:
        """The published definition, or None."""


class Catalog:
    """Definitions by (name, version): registered, shared, or importable by reference."""

    def __init__(self, shared: SharedDefinitions | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._known: dict[tuple[str, int], Saga] = {}
        self._shared = shared
        self._clock = clock
        self._missed: dict[tuple[str, int], float] = {}

    def register(self, saga: Saga) -> None:
        """Know ``saga`` here (and look again for anything missed so far). Raises
        :class:`SagaDefinitionError` for a definition whose version is known here with
        another shape: sagas of that version would run on the wrong steps."""
        known = self._known.get((saga.name, saga.version))
        if known is not None and known is not saga:
            refuse_changed_shape(known, saga)
        self._known[(saga.name, saga.version)] = saga
        self._missed.clear()

    def newest(self, name: str) -> Saga | None:
        """The newest version of ``name`` registered here, or None."""
        versions = [v for (n, v) in self._known if n == name]
        return self._known[(name, max(versions))] if versions else None

    def resolve(self, record: SagaRecord) -> Saga | None:
        """The definition ``record`` was started with, or None if nobody has it (also when
        the one found under its name and version has another shape than the journaled)."""
        saga = self.lookup(record.saga_type, record.version, record.definition_ref)
        if saga is not None and record.shape and shape_hash(saga) != record.shape:
            logger.error("saga {}: its definition {} v{} has shape {}, not the {} it was "
                         "started with", record.saga_id, saga.name, saga.version,
                         shape_hash(saga), record.shape)
            return None
        return saga

    def lookup(self, name: str, version: int, ref: str | None = None) -> Saga | None:
        """The definition ``name`` v``version``, or None if nobody has it."""
        key = (name, version)
        saga = self._known.get(key)
        if saga is not None:
            return saga
        if self._clock() - self._missed.get(key, -MISS_TTL_S) < MISS_TTL_S:
            return None
        saga = self._from_shared(key) or _import(ref)
        if saga is None or (saga.name, saga.version) != key:
            self._missed[key] = self._clock()
            return None
        self._known[key] = saga
        return saga

    def _from_shared(self, key: tuple[str, int]) -> Saga | None:
        """The definition from the cluster's shared store; a store that cannot be read is
        :class:`DefinitionStoreError`, never taken for "nobody registered it"."""
        if self._shared is None:
            return None
        try:
            return self._shared.get(*key)
        except Exception as exc:  # noqa: BLE001 - whatever the store raised
            raise DefinitionStoreError(*key, f"{type(exc).__name__}: {exc}") from None


def _import(ref: str | None) -> Saga | None:
    if not ref:
        return None
    module_name, _, attr = ref.partition(":")
    try:
        saga = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        logger.warning("cannot import {}: {}", ref, exc)
        return None
    return saga if isinstance(saga, (Saga, Choreography)) else None


def refuse_changed_shape(old: Saga, new: Saga) -> None:
    """Raise :class:`SagaDefinitionError` naming what changed, if ``new`` has another
    shape than ``old`` under the same name and version."""
    changes = shape_changes(old, new)
    if changes:
        raise SagaDefinitionError(new.name, f"version {new.version} is already registered "
                                  f"with another shape ({'; '.join(changes)}): register the "
                                  f"changed definition as version {new.version + 1}")


def waiting_for_definition(record: SagaRecord) -> str:
    """What a saga without its definition waits for, said for an operator."""
    shape = f", shape {record.shape}" if record.shape else ""
    return (f"its definition {record.saga_type!r} v{record.version}{shape} (register it "
            "with SagaRuntime(sagas=[...]) or rt.register(...) to recover this saga)")


async def mark_waiting(journal: Journal, record: SagaRecord, *, now: float) -> SagaRecord:
    """Journal, once, that ``record`` waits for its definition, so ``saga-actors list`` and
    the registry show it instead of a saga silently left PENDING."""
    if record.waiting_for is not None:
        return record
    reason = waiting_for_definition(record)
    logger.error("saga {} waits for {}", record.saga_id, reason)
    try:
        return await advance_async(journal, record, Event.DEFINITION_MISSING, now=now,
                                   waiting_for=reason, detail={"waiting_for": reason})
    except JournalConflictError:  # another process moved it meanwhile: it has a definition
        return record
