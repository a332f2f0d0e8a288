"""The registry: an index of every saga, fed by transitions, rebuilt from the journal.

A plain class; :mod:`saga_actors.ray.actors` makes it a named Ray actor. It is a cache: the
journal stays the source of truth, and :meth:`Registry.resync` repairs whatever feed
batches were lost while the registry was down. It holds in memory only the sagas still
open (not COMPLETED or FAILED: those with work to do, and STUCK ones waiting for an
operator), so its memory follows the sagas in flight, not every saga ever run; finished
sagas are listed and counted from the journal, by its indexes.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from saga_actors.errors import SagaNotFoundError
from saga_actors.journal.base import Journal
from saga_actors.model.events import TIMEOUT_ERROR_TYPES, Event
from saga_actors.model.records import Transition
from saga_actors.model.state import SagaStatus
from saga_actors.services.describe import RegistryEntry, describe


class Metrics(Protocol):
    """Where the registry reports numbers (Ray metrics in production)."""

    def sagas_by_status(self, counts: dict[str, int]) -> None: ...
    def saga_outcome(self, saga_type: str, outcome: str, *, n: int = 1) -> None: ...
    def step_outcome(self, saga_type: str, kind: str, outcome: str, *, n: int = 1) -> None: ...
    def choreography(self, saga_type: str, what: str, *, n: int = 1) -> None: ...
    def step_latency(self, saga_type: str, seconds: float) -> None: ...
    def saga_latency(self, saga_type: str, status: str, seconds: float) -> None: ...


# what the registry keeps in memory: every status but the two a saga never leaves (a
# child's undo reopens a COMPLETED saga: the feed brings it back)
OPEN = frozenset(SagaStatus) - {SagaStatus.COMPLETED, SagaStatus.FAILED}

# how many finished sagas the registry remembers by id and seq, so that a feed batch that
# comes late (older than the one that finished the saga) cannot bring it back as open
RECENTLY_FINISHED = 10_000

# an overview is computed at most this often (every open console asks for it)
OVERVIEW_TTL_S = 2.0

# a resync looks this far before the last one: a write journaled just before it may be
# committed just after it
RESYNC_MARGIN_S = 2.0

# transition event -> (counter kind, outcome); a failed attempt that is not the last one
# counts as "retried", a timed-out one as "timed_out"
_OUTCOMES = {
    Event.STEP_SUCCEEDED: ("step", "succeeded"),
    Event.ACTION_ATTEMPT_FAILED: ("step", "failed"),
    Event.STEP_COMPENSATED: ("compensation", "succeeded"),
    Event.COMPENSATION_ATTEMPT_FAILED: ("compensation", "failed"),
}
# the transitions that start or end a saga -> the outcome counted by saga type
_SAGA_OUTCOMES = {
    Event.SAGA_STARTED: "started",
    Event.SAGA_COMPLETED: "completed",
    Event.SAGA_FAILED: "failed",
    Event.SAGA_STUCK: "stuck",
}


class Registry:
    """Index of sagas with queries by id, status, type and time."""

    def __init__(
        self, journal: Journal, *, metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time, hosts: int | Callable[[], int] = 2,
    ) -> None:
        self._journal = journal
        self._hosts = hosts
        self._metrics = metrics
        self._clock = clock
        self._entries: dict[str, RegistryEntry] = {}
        self._finished: OrderedDict[str, int] = OrderedDict()  # the latest few: id -> seq
        self._synced_at = 0.0
        self._overview: dict[tuple, tuple[float, dict[str, Any]]] = {}
        self._outside: Counter[tuple[str, str]] = Counter()  # events from outside, by fate
        self.rebuild()

    # --- feeding --------------------------------------------------------------------

    def rebuild(self) -> int:
        """Reload every open saga from the journal; returns how many."""
        now = self._clock()
        self._entries = {r.saga_id: RegistryEntry.of(r)
                         for r in self._journal.query(statuses=OPEN)}
        self._synced_at = now
        return len(self._entries)

    def resync(self, margin_s: float = RESYNC_MARGIN_S) -> int:
        """Pick up sagas the journal changed since the last sync; returns how many."""
        now = self._clock()
        changed = self._journal.query(updated_since=self._synced_at - margin_s)
        for record in changed:
            self._put(RegistryEntry.of(record))
        self._synced_at = now
        return len(changed)

    def ingest(self, batch: Iterable[dict[str, Any]]) -> None:
        """Apply a batch of ``{"entry": ..., "events": [feed_event(...), ...]}``."""
        tally: Counter[tuple[str, ...]] = Counter()  # one counter call per series per batch
        for item in batch:
            entry = RegistryEntry.model_validate(item["entry"])
            self._put(entry)
            for event in item.get("events", ()):
                self._count(entry, tally, *event)
        if self._metrics is not None:
            for (what, *tags), n in tally.items():
                getattr(self._metrics, what)(*tags, n=n)

    def _put(self, entry: RegistryEntry) -> None:
        old = self._entries.get(entry.saga_id)
        finished_at_seq = self._finished.get(entry.saga_id)
        if (old is not None and entry.seq < old.seq) or (
                finished_at_seq is not None and entry.seq <= finished_at_seq):
            return  # a late batch: what it says is older than what is known
        if entry.status in OPEN:
            self._entries[entry.saga_id] = entry
            self._finished.pop(entry.saga_id, None)
            return
        self._entries.pop(entry.saga_id, None)  # finished: the journal answers for it now
        self._finished[entry.saga_id] = entry.seq  # (and a late batch must not reopen it)
        self._finished.move_to_end(entry.saga_id)
        while len(self._finished) > RECENTLY_FINISHED:
            self._finished.popitem(last=False)

    def _count(self, entry: RegistryEntry, tally: Counter[tuple[str, ...]], event: str,
               status: str, error_type: str | None, latency_s: float | None,
               final: bool = True) -> None:
        event, status = Event(event), SagaStatus(status)
        if event is Event.EVENT_RECEIVED:
            self._outside[entry.saga_type, "external_taken"] += 1
        if self._metrics is None:
            return
        kind_outcome = _OUTCOMES.get(event)
        if kind_outcome:
            kind, outcome = kind_outcome
            if error_type in TIMEOUT_ERROR_TYPES:
                outcome = "timed_out"
            elif outcome == "failed" and not final:
                outcome = "retried"
            tally["step_outcome", entry.saga_type, kind, outcome] += 1
        saga_outcome = _SAGA_OUTCOMES.get(event)
        if event is Event.EVENT_PUBLISHED and status is SagaStatus.COMPLETED:
            saga_outcome = "completed"  # a choreography ends on its terminal event
        if saga_outcome:
            tally["saga_outcome", entry.saga_type, saga_outcome] += 1
        if entry.placement == "choreography":
            what = ("delivered" if event.is_sent else "published"
                    if event is Event.EVENT_PUBLISHED else "parked"
                    if event is Event.SAGA_STUCK else "external_taken"
                    if event is Event.EVENT_RECEIVED else None)
            if what:
                tally["choreography", entry.saga_type, what] += 1
        if event is Event.STEP_SUCCEEDED and latency_s is not None:
            self._metrics.step_latency(entry.saga_type, latency_s)
        if status.terminal and entry.finished_at is not None:
            self._metrics.saga_latency(entry.saga_type, status.value,
                                       entry.finished_at - entry.created_at)

    def count_outside(self, saga_type: str, what: str) -> None:
        """An event from outside that the supervisor did not journal: a duplicate dropped
        (``duplicate_dropped``), or one refused because its saga had finished
        (``refused_finished``)."""
        self._outside[saga_type, what] += 1
        if self._metrics is not None:
            self._metrics.choreography(saga_type, what)

    def outside_events(self) -> dict[str, dict[str, int]]:
        """Events from outside by saga type: taken into a saga's log, duplicates dropped,
        refused for finished sagas (since this registry started)."""
        out: dict[str, dict[str, int]] = {}
        for (saga_type, what), n in sorted(self._outside.items()):
            out.setdefault(saga_type, {})[what] = n
        return out

    def publish(self) -> None:
        """Re-set the by-status gauges (Ray drops a gauge not re-set for ~30 s)."""
        if self._metrics is not None:
            self._metrics.sagas_by_status(self.counts())

    # --- queries --------------------------------------------------------------------

    def get(self, saga_id: str) -> dict[str, Any]:
        """One saga: its entry, its steps with attempts and timings, its full history."""
        record = self._journal.load(saga_id)
        if record is None:
            raise SagaNotFoundError(saga_id)
        self._put(RegistryEntry.of(record))
        hosts = self._hosts() if callable(self._hosts) else self._hosts
        return describe(record, self._journal.history(saga_id), hosts=hosts)

    def list(
        self,
        *,
        status: str | None = None,
        saga_type: str | None = None,
        version: int | None = None,
        id_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Entries, newest first, filtered (status, type, definition version, id prefix,
        creation time) and paged: open sagas from memory, the rest from the journal."""
        wanted = SagaStatus(status) if status else None
        if wanted is None or wanted not in OPEN or version is not None:
            records = self._journal.query(
                statuses=[wanted] if wanted else None, saga_type=saga_type, version=version,
                id_prefix=id_prefix, since=since, until=until, limit=limit, offset=offset,
                newest_first=True)
            return [RegistryEntry.json_of(r) for r in records]
        rows = [
            e for e in self._entries.values()
            if e.status is wanted
            and (saga_type is None or e.saga_type == saga_type)
            and (not id_prefix or e.saga_id.startswith(id_prefix))
            and (since is None or e.created_at >= since)
            and (until is None or e.created_at < until)
        ]
        rows.sort(key=lambda e: (e.created_at, e.saga_id), reverse=True)
        return [e.model_dump(mode="json") for e in rows[offset : offset + limit]]

    def counts(self) -> dict[str, int]:
        """Sagas by status, every status present (from the journal's index)."""
        return self._journal.counts()

    def overview(self, *, window_s: float = 3600.0, bucket_s: float = 60.0,
                 stuck_limit: int = 50) -> dict[str, Any]:
        """What an operator looks at first, in one answer: counts by status and by saga
        type, starts and ends per ``bucket_s`` over the last ``window_s``, and the STUCK
        sagas (newest first, with their reasons). Computed at most once per
        ``OVERVIEW_TTL_S``: however many consoles are open, the journal is asked once."""
        key = (window_s, bucket_s, stuck_limit)
        now = self._clock()
        cached = self._overview.get(key)
        if cached is not None and now - cached[0] < OVERVIEW_TTL_S:
            return cached[1]
        buckets = max(1, int(window_s // bucket_s))
        since = (now // bucket_s + 1 - buckets) * bucket_s  # whole buckets: stable bars
        stuck = sorted((e for e in self._entries.values() if e.status is SagaStatus.STUCK),
                       key=lambda e: (e.updated_at, e.saga_id), reverse=True)
        answer = {
            "at": now, "counts": self._journal.counts(),
            "by_type": self._journal.counts_by_type(),
            "activity": self._journal.activity(since=since, bucket_s=bucket_s,
                                               buckets=buckets),
            "stuck": [e.model_dump(mode="json") for e in stuck[:stuck_limit]],
            "stuck_total": len(stuck),
        }
        self._overview = {key: (now, answer)}
        return answer

    def seq(self, saga_id: str) -> int:
        """The number of a saga's last transition: whether anything happened since a
        page showed it (an open saga's from memory; a finished one's from the journal)."""
        entry = self._entries.get(saga_id)
        if entry is not None:
            return entry.seq
        record = self._journal.load(saga_id)
        if record is None:
            raise SagaNotFoundError(saga_id)
        return record.seq

    def saga_input(self, saga_id: str) -> dict[str, Any]:
        """A saga's type, version and input as journaled (secrets in the clear: the
        caller masks them with the input model before anyone sees them)."""
        record = self._journal.load(saga_id)
        if record is None:
            raise SagaNotFoundError(saga_id)
        return {"saga_type": record.saga_type, "version": record.version,
                "input": record.input}

    def __len__(self) -> int:
        """How many sagas the registry holds in memory (the open ones)."""
        return len(self._entries)


def feed_event(transition: Transition) -> tuple[str, str, str | None, float | None, bool]:
    """What the registry needs of a transition for its metrics, in a few bytes: the event,
    the status, the failure's error type, the latency, and whether a failed attempt was the
    last one."""
    detail = transition.detail
    return (Event(transition.event).value, transition.status.value, detail.get("error_type"),
            detail.get("latency_s"), bool(detail.get("final", True)))
