"""The journal: the source of truth for every saga. One abstract store, backends by URL."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

from saga_actors.errors import JournalError
from saga_actors.model.records import SagaRecord, Signal, Transition
from saga_actors.model.state import TERMINAL, SagaStatus

SCHEMA_VERSION = 1


class JournalConflictError(JournalError):
    """Another writer advanced this saga first (a stale instance must stop)."""


class Journal(abc.ABC):
    """Durable store of saga snapshots and their transitions.

    Writers use optimistic concurrency: :meth:`commit` takes a record whose ``seq`` is one
    past the stored one, so a zombie instance of a saga (its actor was replaced) cannot
    overwrite the live one's progress.
    """

    url: str

    @abc.abstractmethod
    def create(self, record: SagaRecord, *transitions: Transition) -> bool:
        """Store a new saga with its first ``transitions``, atomically; ``False`` (and
        nothing written) if the id exists."""

    def create_many(self, created: list[tuple]) -> list[bool]:
        """:meth:`create` for many sagas (each ``(record, *transitions)``); backends make
        it one transaction."""
        return [self.create(record, *transitions) for record, *transitions in created]

    async def create_async(self, record: SagaRecord, *transitions: Transition) -> bool:
        """:meth:`create`, awaitable; group-committing backends batch it with others."""
        return self.create(record, *transitions)

    @abc.abstractmethod
    def commit(self, record: SagaRecord, *transitions: Transition) -> None:
        """Replace the snapshot and append ``transitions``, atomically.

        Raises :class:`JournalConflictError` unless the first transition's seq is the
        stored seq + 1 (and ``record.seq`` the last one's).
        """

    async def write(self, record: SagaRecord, *transitions: Transition) -> None:
        """Like :meth:`commit` for one or more consecutive transitions, atomically, and
        awaitable: returns once they are durable. ``record.seq`` is the last one's seq.
        Backends that group writes from many sagas into one transaction override it."""
        self.commit(record, *transitions)

    @abc.abstractmethod
    def load(self, saga_id: str) -> SagaRecord | None:
        """The snapshot of ``saga_id``, or ``None``."""

    @abc.abstractmethod
    def history(self, saga_id: str) -> list[Transition]:
        """Every transition of ``saga_id``, oldest first."""

    @abc.abstractmethod
    def query(
        self,
        *,
        statuses: Iterable[SagaStatus] | None = None,
        saga_type: str | None = None,
        version: int | None = None,
        id_prefix: str | None = None,
        placement: str | None = None,
        since: float | None = None,
        until: float | None = None,
        updated_since: float | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[SagaRecord]:
        """Snapshots filtered by status, type, definition version, id prefix, placement,
        creation time and last update; oldest first (``newest_first``: the other way),
        paged."""

    @abc.abstractmethod
    def put_signal(self, signal: Signal) -> bool:
        """Keep a signal for its saga; ``False`` (and nothing written) if one with the same
        saga and signal id is kept already."""

    @abc.abstractmethod
    def signals(self, saga_id: str) -> list[Signal]:
        """The signals sent to ``saga_id``, oldest first."""

    def write_alone_when(self, alone: Callable[[], bool]) -> None:
        """A hint from the process that owns this journal object: ``alone()`` is true while
        it runs one saga only (a dedicated saga actor; a host or a driver with one saga in
        flight). A backend may then commit a write at once in the caller's thread instead
        of waiting to group it with others. Default: ignored."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's resources."""

    def non_terminal(self, placement: str | None = None) -> list[SagaRecord]:
        """Every saga that still has work to do (of one placement, if given)."""
        live = set(SagaStatus) - TERMINAL
        return self.query(statuses=live, placement=placement)

    def counts(self) -> dict[str, int]:
        """Number of sagas by status (every status present, zeros included)."""
        out = {s.value: 0 for s in SagaStatus}
        for rec in self.query():
            out[rec.status.value] += 1
        return out

    def correlated(self, saga_type: str, field: str, value: Any, *,
                   limit: int = 20) -> list[SagaRecord]:
        """The sagas of ``saga_type`` whose input's ``field`` is ``value``, newest first (how
        an event from outside finds its saga by a field it carries). Default: a scan."""
        from saga_actors.journal.reads import as_text

        found = [r for r in self.query(saga_type=saga_type, newest_first=True)
                 if field in r.input and as_text(r.input[field]) == as_text(value)]
        return found[:limit]

    def counts_by_type(self) -> dict[str, dict[str, int]]:
        """Sagas by type, then by status (only the statuses a type has)."""
        out: dict[str, dict[str, int]] = {}
        for rec in self.query():
            by_status = out.setdefault(rec.saga_type, {})
            by_status[rec.status.value] = by_status.get(rec.status.value, 0) + 1
        return out

    def activity(self, *, since: float, bucket_s: float, buckets: int) -> dict[str, Any]:
        """How many sagas started, and how many ended (COMPLETED or FAILED: by their last
        update), in each of ``buckets`` intervals of ``bucket_s`` seconds from ``since``."""
        series = {"starts": [0] * buckets, "ends": [0] * buckets}
        ended = {SagaStatus.COMPLETED, SagaStatus.FAILED}
        for rec in self.query(updated_since=since):
            for name, at in (("starts", rec.created_at),
                             ("ends", rec.updated_at if rec.status in ended else None)):
                b = None if at is None or at < since else int((at - since) // bucket_s)
                if b is not None and b < buckets:
                    series[name][b] += 1
        return {"since": since, "bucket_s": bucket_s, **series}
