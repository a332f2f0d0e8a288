"""What can happen to a saga: every journaled transition is one :class:`Event`. No Ray.

The journal, the registry, the metrics and the CLI classify transitions by these members,
never by their text. Events are ``str`` members, so the journal keeps the same plain
strings and old journals read as they are.
"""

from __future__ import annotations

import enum
from typing import Literal

Phase = Literal["action", "compensation"]


class Event(str, enum.Enum):
    """One kind of journaled transition; its value (what the journal holds) is its name in
    lower case."""

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list) -> str:
        return name.lower()

    SAGA_STARTED = enum.auto()
    """Accepted and journaled."""
    RESUMED = enum.auto()
    """A new instance picked the saga up (after a crash, a restart, a retry)."""
    DEFINITION_MISSING = enum.auto()
    """No process has the saga's definition: it waits, visibly."""
    CANCEL_REQUESTED = enum.auto()
    ACTION_SENT = enum.auto()
    """Journaled before the call goes out (``attempt`` says which)."""
    ACTION_ATTEMPT_FAILED = enum.auto()
    STEP_SUCCEEDED = enum.auto()
    WAIT_STARTED = enum.auto()
    """A wait step waits for its signal (``detail``: signal, until)."""
    CHILD_STARTED = enum.auto()
    """A child step started (or found) its child saga (``detail.child_id``)."""
    PIVOT_SETTLED = enum.auto()
    """A pivot of unknown outcome was settled by its participant (``detail.applied``)."""
    EVENT_PUBLISHED = enum.auto()
    """A choreographed saga's event entered its log (``detail``: type, id, causation)."""
    EVENT_RECEIVED = enum.auto()
    """An event from outside entered a running choreographed saga's log (``detail``: type,
    id, the sender's event id)."""
    COMPENSATION_STARTED = enum.auto()
    COMPENSATION_SENT = enum.auto()
    COMPENSATION_ATTEMPT_FAILED = enum.auto()
    STEP_COMPENSATED = enum.auto()
    SAGA_COMPLETED = enum.auto()
    SAGA_FAILED = enum.auto()
    SAGA_STUCK = enum.auto()
    ACTOR_RESTARTED = enum.auto()
    """The supervisor restarts a dedicated saga's lost actor."""
    INSTANCE_RESTARTED = enum.auto()
    """A host restarts a hosted saga's crashed instance."""
    RETRY_REQUESTED = enum.auto()
    """An operator re-drives a STUCK saga."""
    RESOLVED = enum.auto()
    """An operator ended a STUCK saga by hand."""

    @staticmethod
    def sent(phase: Phase) -> Event:
        """The ``*_sent`` event of ``phase``."""
        return Event.ACTION_SENT if phase == "action" else Event.COMPENSATION_SENT

    @staticmethod
    def attempt_failed(phase: Phase) -> Event:
        """The ``*_attempt_failed`` event of ``phase``."""
        return (Event.ACTION_ATTEMPT_FAILED if phase == "action"
                else Event.COMPENSATION_ATTEMPT_FAILED)

    @property
    def phase(self) -> Phase | None:
        """The step phase this event belongs to, if it is about one step call."""
        return _PHASES.get(self)

    @property
    def is_sent(self) -> bool:
        return self in (Event.ACTION_SENT, Event.COMPENSATION_SENT, Event.WAIT_STARTED,
                        Event.CHILD_STARTED)

    @property
    def is_attempt_failure(self) -> bool:
        return self in (Event.ACTION_ATTEMPT_FAILED, Event.COMPENSATION_ATTEMPT_FAILED)

    @property
    def is_step_success(self) -> bool:
        return self in (Event.STEP_SUCCEEDED, Event.STEP_COMPENSATED)


_PHASES: dict[Event, Phase] = {
    Event.ACTION_SENT: "action",
    Event.ACTION_ATTEMPT_FAILED: "action",
    Event.STEP_SUCCEEDED: "action",
    Event.WAIT_STARTED: "action",
    Event.CHILD_STARTED: "action",
    Event.PIVOT_SETTLED: "action",
    Event.COMPENSATION_SENT: "compensation",
    Event.COMPENSATION_ATTEMPT_FAILED: "compensation",
    Event.STEP_COMPENSATED: "compensation",
}

# error types that say a call's outcome is unknown because it ran out of time
TIMEOUT_ERROR_TYPES = frozenset({"StepTimeoutError"})
