"""In-memory journal for unit tests: shared by name within one process, lost on exit."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from saga_actors.journal.base import Journal, JournalConflictError
from saga_actors.model.records import SagaRecord, Signal, Transition
from saga_actors.model.state import SagaStatus

_STORES: dict[str, tuple[dict[str, str], dict[str, list[str]]]] = {}
_SIGNALS: dict[str, dict[tuple[str, str], str]] = {}
_LOCK = threading.Lock()


class MemoryJournal(Journal):
    """Keeps JSON text, like the durable backends, so tests catch non-JSON data."""

    def __init__(self, url: str) -> None:
        self.url = url
        with _LOCK:
            self._records, self._history = _STORES.setdefault(url, ({}, {}))
            self._signals = _SIGNALS.setdefault(url, {})

    def create(self, record: SagaRecord, *transitions: Transition) -> bool:
        rec_json, tr_json = record.model_dump_json(), [t.model_dump_json() for t in transitions]
        with _LOCK:
            if record.saga_id in self._records:
                return False
            self._records[record.saga_id] = rec_json
            self._history[record.saga_id] = tr_json
        return True

    def commit(self, record: SagaRecord, *transitions: Transition) -> None:
        rec_json = record.model_dump_json()
        tr_json = [t.model_dump_json() for t in transitions]
        with _LOCK:
            stored = self._records.get(record.saga_id)
            stored_seq = SagaRecord.model_validate_json(stored).seq if stored else None
            if stored_seq is None or record.seq != stored_seq + len(transitions):
                raise JournalConflictError(
                    self.url, f"saga {record.saga_id}: seq {record.seq} after {stored_seq}"
                )
            self._records[record.saga_id] = rec_json
            self._history[record.saga_id].extend(tr_json)

    def load(self, saga_id: str) -> SagaRecord | None:
        raw = self._records.get(saga_id)
        return SagaRecord.model_validate_json(raw) if raw else None

    def history(self, saga_id: str) -> list[Transition]:
        return [Transition.model_validate_json(t) for t in self._history.get(saga_id, [])]

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
        wanted = {SagaStatus(s) for s in statuses} if statuses is not None else None
        with _LOCK:
            recs = [SagaRecord.model_validate_json(r) for r in self._records.values()]
        out = [
            r
            for r in sorted(recs, key=lambda r: (r.created_at, r.saga_id), reverse=newest_first)
            if (wanted is None or r.status in wanted)
            and (saga_type is None or r.saga_type == saga_type)
            and (version is None or r.version == version)
            and (not id_prefix or r.saga_id.startswith(id_prefix))
            and (placement is None or r.placement == placement)
            and (since is None or r.created_at >= since)
            and (until is None or r.created_at < until)
            and (updated_since is None or r.updated_at >= updated_since)
        ]
        end = None if limit is None else offset + limit
        return out[offset:end]

    def put_signal(self, signal: Signal) -> bool:
        key = (signal.saga_id, signal.signal_id)
        with _LOCK:
            if key in self._signals:
                return False
            self._signals[key] = signal.model_dump_json()
        return True

    def signals(self, saga_id: str) -> list[Signal]:
        with _LOCK:
            kept = [Signal.model_validate_json(v) for (sid, _), v in self._signals.items()
                    if sid == saga_id]
        return sorted(kept, key=lambda s: (s.at, s.signal_id))

    def close(self) -> None:
        pass
