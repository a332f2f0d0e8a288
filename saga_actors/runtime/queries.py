"""What :class:`~saga_actors.runtime.client.SagaRuntime` answers and does for
operators: where a saga stands, its history, waiting for it, and cancel, retry, resolve,
signals and a choreography's events from outside."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from saga_actors.constants import OPERATOR_CALL_TIMEOUT_S, POOLED
from saga_actors.engine.outside_events import check_outside_event
from saga_actors.errors import (
    InvalidSagaIdError,
    SagaNotFoundError,
    SagaWaitTimeoutError,
    UnknownEventError,
)
from saga_actors.model.choreography import Choreography
from saga_actors.model.records import SagaRecord, Transition
from saga_actors.model.state import SagaStatus
from saga_actors.ray import calls
from saga_actors.ray.host_count import current_hosts
from saga_actors.services.host import by_shard

Progress = Callable[[SagaRecord], None]
_LIVE = [s for s in SagaStatus if not s.terminal]


class QueriesAndActions:
    """Queries and operator actions, mixed into the runtime (which has ``journal``,
    ``config``, ``supervisor`` and its hosts)."""

    def get(self, saga_id: str) -> SagaRecord:
        """The journaled state of ``saga_id``."""
        record = self.journal.load(saga_id)
        if record is None:
            raise SagaNotFoundError(saga_id)
        return record

    def history(self, saga_id: str) -> list[Transition]:
        """Every journaled transition of ``saga_id``, oldest first."""
        self.get(saga_id)
        return self.journal.history(saga_id)

    def list(
        self,
        *,
        status: SagaStatus | str | None = None,
        saga_type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SagaRecord]:
        """Sagas, newest first (as the CLI and the registry list them), filtered and
        paged."""
        statuses = None if status is None else [SagaStatus(status)]
        return self.journal.query(
            statuses=statuses, saga_type=saga_type, since=since, until=until,
            limit=limit, offset=offset, newest_first=True,
        )

    def wait(
        self,
        saga_id: str,
        *,
        timeout_s: float = 60.0,
        poll_s: float = 0.05,
        on_progress: Progress | None = None,
    ) -> SagaRecord:
        """Block until ``saga_id`` is terminal; raise :class:`SagaWaitTimeoutError` past
        ``timeout_s``. ``on_progress`` sees each new state."""
        return self.wait_all([saga_id], timeout_s=timeout_s, poll_s=poll_s,
                             on_progress=on_progress)[0]

    def wait_all(
        self,
        saga_ids: Iterable[str],
        *,
        timeout_s: float = 60.0,
        poll_s: float = 0.05,
        on_progress: Progress | None = None,
    ) -> list[SagaRecord]:
        """Block until every saga is terminal; records in the order given."""
        ids = list(saga_ids)
        if on_progress is None and len(ids) > 1:
            self._wait_hosted(ids, timeout_s)  # hosts answer for their sagas in bulk
        seen: dict[str, int] = {}
        done: dict[str, SagaRecord] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            for saga_id in ids:
                if saga_id in done:
                    continue
                record = self.get(saga_id)
                if on_progress is not None and seen.get(saga_id) != record.seq:
                    seen[saga_id] = record.seq
                    on_progress(record)
                if record.status.terminal:
                    done[saga_id] = record
            if len(done) == len(ids):
                return [done[i] for i in ids]
            if time.monotonic() >= deadline:
                late = next(self.get(i) for i in ids if i not in done)
                raise SagaWaitTimeoutError(late.saga_id, late.status.value, timeout_s)
            time.sleep(poll_s)

    def _wait_hosted(self, ids: list[str], timeout_s: float) -> None:
        """Ask each host (and bus) once for all of its sagas among ``ids`` (cheaper than
        polling)."""
        wanted = set(ids)
        refs = []
        for placement in POOLED:
            pooled = [r.saga_id for r in self.journal.query(placement=placement,
                                                            statuses=_LIVE)
                      if r.saga_id in wanted]
            if pooled:
                pool = self._pool(placement)
                refs += [pool[i].wait.remote(group)
                         for i, group in by_shard(pooled, current_hosts(self.config)).items()]
        if not refs:
            return
        try:
            calls.get_ready(refs, timeout_s=timeout_s)
        except calls.RayError:
            self._pools.clear()  # a host died: look the hosts up again next time

    # --- operator actions -----------------------------------------------------------

    def cancel(self, saga_id: str, reason: str = "cancelled by operator") -> bool:
        """Abort a running or queued saga: True when it will compensate and end FAILED
        (asking again is safe); False when it cannot (already over, or past its pivot).
        Raises :class:`RunnerUnavailableError` when the actor running it does not answer
        (the cancel may still land later)."""
        self.get(saga_id)
        return self._ask_supervisor("cancel", saga_id, reason)

    def retry(self, saga_id: str) -> str:
        """Re-drive a STUCK saga from where it stuck; returns the status it resumes in."""
        self.get(saga_id)
        return self._ask_supervisor("retry", saga_id)

    def resolve(self, saga_id: str, note: str) -> None:
        """Mark a STUCK saga resolved by hand: it ends FAILED with ``note`` in its history."""
        self.get(saga_id)
        self._ask_supervisor("resolve", saga_id, note)

    def signal(self, saga_id: str, name: str, payload: Any = None, *,
               signal_id: str | None = None) -> str:
        """Send the outside signal ``name`` to ``saga_id`` (a wait step takes it); returns
        its signal id. It is journaled at once, also before the saga reaches its wait; the
        same ``signal_id`` sent again is taken once. Raises :class:`SagaNotFoundError`,
        :class:`SagaFinishedError`, :class:`UnknownSignalError` (no wait step takes this
        name) or :class:`SignalPayloadError` (the payload fails the wait's model): then
        nothing is journaled."""
        self.get(saga_id)
        signal_id = signal_id or uuid.uuid4().hex
        if hasattr(payload, "model_dump"):
            payload = payload.model_dump(mode="json")
        self._ask_supervisor("signal", saga_id, name, payload or {}, signal_id)
        return signal_id

    def publish(self, choreography: str | Choreography, event_type: str, payload: Any, *,
                saga_id: str | None = None, event_id: str | None = None) -> str:
        """Publish an event of a choreography from outside; returns the saga id it went to.

        - Its **start event** starts a saga (``saga_id``, its correlation id, is required).
          Publishing the same start event again (same id, same payload) is that saga.
        - An **event from outside** (its model says ``external = True``) enters a running
          saga: the one named by ``saga_id``, or the one its correlation field finds (the
          model's ``correlate_by``: the running saga whose input has the same value). It is
          journaled before this returns, and deduplicated by ``event_id`` (give the id your
          sender gave it: the same id sent again is kept once; default: a new one).

        Checked before anything is journaled: an undeclared event, or one that neither
        starts a saga nor comes from outside, :class:`UnknownEventError`; a payload that
        fails the event's model :class:`SagaInputError` (a start) or
        :class:`EventPayloadError`; no such saga :class:`SagaNotFoundError`, a correlation
        value that finds none :class:`UncorrelatedEventError`; a finished saga
        :class:`SagaFinishedError`; a missing or bad start saga id
        :class:`InvalidSagaIdError`."""
        c = self.definition(choreography)
        if not isinstance(c, Choreography):
            raise UnknownEventError(event_type, c.name, "it is an orchestrated saga, not a "
                                    "choreography: start it with start()")
        if event_type == c.start:
            if not saga_id:
                raise InvalidSagaIdError(saga_id or "")
            return self.start(c, payload, saga_id=saga_id)
        check_outside_event(c, event_type)  # (an undeclared or inside-only event: raises)
        if hasattr(payload, "model_dump"):
            payload = payload.model_dump(mode="json")
        self.definitions.publish(c)
        self._register(c, "choreography")
        found, _ = self._ask_supervisor("publish", c.name, c.version, event_type, payload,
                                        event_id or uuid.uuid4().hex, saga_id)
        return found

    def _ask_supervisor(self, method: str, *args: Any) -> Any:
        """An operator's request; a saga_actors error the supervisor raises (the saga is
        not STUCK, its host did not answer) comes back as itself. Sent again while Ray
        restarts the supervisor: a cancel is safe to repeat, a signal or an event keeps
        the id chosen before it was first sent, and a retry or a resolve that was taken
        is refused the second time (the saga is no longer STUCK), never applied twice."""
        return calls.ask(lambda: getattr(self.supervisor, method).remote(*args),
                         timeout_s=OPERATOR_CALL_TIMEOUT_S)
