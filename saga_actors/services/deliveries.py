"""What the outside world sends to running sagas through the supervisor: signals for an
orchestrated saga's wait steps, and events for a choreographed saga. Each is checked, then
journaled, then the saga's runner is nudged. A part of
:class:`~saga_actors.services.supervisor.Supervisor`. No Ray."""

from __future__ import annotations

import contextlib
from typing import Any

from saga_actors.constants import POOLED
from saga_actors.engine.outside_events import accept_outside_event, find_saga
from saga_actors.engine.signals import accept_signal
from saga_actors.errors import (
    RunnerUnavailableError,
    SagaNotFoundError,
    SagaUsageError,
    UnknownEventError,
)
from saga_actors.model.choreography import Choreography
from saga_actors.model.records import SagaRecord


class Deliveries:
    """Signals and events from outside (mixed into the supervisor)."""

    async def signal(self, saga_id: str, name: str, payload: Any, signal_id: str,
                     max_bytes: int) -> bool:
        """Journal a signal for ``saga_id`` (checked: see :func:`accept_signal`) and wake
        the saga's runner; False when the same signal id was sent before."""
        record = self._journal.load(saga_id)
        if record is None:
            raise SagaNotFoundError(saga_id)
        definition = self.definitions.resolve(record)
        if definition is None:
            raise SagaUsageError(f"saga {saga_id} waits for its definition: "
                                 f"{record.waiting_for or record.saga_type}")
        fresh = accept_signal(self._journal, definition, record, name, payload,
                              signal_id=signal_id, now=self._clock.now(), max_bytes=max_bytes)
        if fresh:
            await self._wake_runner(record)
        return fresh

    async def publish(self, saga_type: str, version: int | None, event_type: str, payload: Any,
                      event_id: str, saga_id: str | None, max_bytes: int) -> tuple[str, bool]:
        """Journal an event from outside for a running choreographed saga (``saga_id``, or
        found by the event's correlation field) and wake its runner: (its saga id, False
        when the same event id was sent before). See :mod:`engine.outside_events`."""
        c = (self.definitions.lookup(saga_type, version) if version is not None
             else self.definitions.newest(saga_type))
        if c is None:  # not registered here (a restarted supervisor): its newest saga's
            newest = self._journal.query(saga_type=saga_type, limit=1, newest_first=True)
            c = self.definitions.resolve(newest[0]) if newest else None
        if saga_id is not None:
            if (record := self._journal.load(saga_id)) is None:
                raise SagaNotFoundError(saga_id)
        elif not isinstance(c, Choreography):
            raise UnknownEventError(event_type, saga_type, "no choreography of that name is "
                                    "registered")
        else:
            record = find_saga(self._journal, c, event_type, payload)
        if record.saga_type != saga_type:
            raise UnknownEventError(event_type, saga_type, f"saga {record.saga_id} is a "
                                    f"{record.saga_type!r} saga")
        definition = self.definitions.resolve(record) or c
        if not isinstance(definition, Choreography):
            raise UnknownEventError(event_type, saga_type, f"saga {record.saga_id} is not a "
                                    "choreography (or its definition is not registered)")
        fresh = accept_outside_event(self._journal, definition, record, event_type, payload,
                                     event_id=event_id, now=self._clock.now(),
                                     max_bytes=max_bytes)
        if fresh:
            await self._wake_runner(record)
        return record.saga_id, fresh

    async def _wake_runner(self, record: SagaRecord) -> None:
        """Something was journaled for a running saga: nudge whatever runs it."""
        root = record.saga_id.split("/", 1)[0]  # a child saga runs inside its root's runner
        if record.placement in POOLED:
            with contextlib.suppress(RunnerUnavailableError):  # a new host finds it
                await self._fleet.hosted(root, "nudge", placement=record.placement)
        elif (live := self._live.get(root)) is not None:
            await self._fleet.nudge(live.handle, self.settings.answer_timeout_s)
