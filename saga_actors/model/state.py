"""Saga states and the transitions allowed between them. No Ray."""

from __future__ import annotations

import enum


class SagaStatus(str, enum.Enum):
    """Where a saga stands (the seed's five states, plus STUCK)."""

    STARTED = "STARTED"
    """Accepted and journaled; no step sent yet."""
    PENDING = "PENDING"
    """A forward step is in flight."""
    COMPENSATING = "COMPENSATING"
    """Rolling back the completed compensatable steps, newest first."""
    COMPLETED = "COMPLETED"
    """Every step succeeded."""
    FAILED = "FAILED"
    """A step failed for good and every completed compensatable step was compensated."""
    STUCK = "STUCK"
    """A compensation failed past its budget; parked for an operator (retry or resolve)."""

    @property
    def terminal(self) -> bool:
        """No further work happens on its own (STUCK waits for an operator)."""
        return self in TERMINAL


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.STUCK})

ALLOWED: dict[SagaStatus, frozenset[SagaStatus]] = {
    # STUCK from a forward state: the supervisor gave up restarting a saga's actor.
    SagaStatus.STARTED: frozenset(
        {SagaStatus.PENDING, SagaStatus.COMPENSATING, SagaStatus.STUCK}
    ),
    SagaStatus.PENDING: frozenset(
        {SagaStatus.PENDING, SagaStatus.COMPLETED, SagaStatus.COMPENSATING, SagaStatus.STUCK}
    ),
    SagaStatus.COMPENSATING: frozenset(
        {SagaStatus.COMPENSATING, SagaStatus.FAILED, SagaStatus.STUCK}
    ),
    # retry goes back to where the saga stuck; resolve ends it by hand
    SagaStatus.STUCK: frozenset(
        {SagaStatus.STARTED, SagaStatus.PENDING, SagaStatus.COMPENSATING, SagaStatus.FAILED}
    ),
    SagaStatus.COMPLETED: frozenset(),
    SagaStatus.FAILED: frozenset(),
}


class IllegalTransitionError(RuntimeError):
    """A bug: the state machine tried a transition the table forbids."""

    def __init__(self, source: str, target: str) -> None:
        super().__init__(source, target)
        self.source = source
        self.target = target

    def __str__(self) -> str:
        return f"illegal saga transition {self.source} -> {self.target}"


# The one way out of a terminal state: a COMPLETED child saga whose parent compensates the
# step that ran it is undone (its compensations run) and ends FAILED.
CHILD_UNDO = (SagaStatus.COMPLETED, SagaStatus.COMPENSATING)


def check_transition(source: SagaStatus, target: SagaStatus, *,
                     child_undo: bool = False) -> None:
    """Raise :class:`IllegalTransitionError` unless ``source -> target`` is allowed
    (``child_undo``: a parent undoes its completed child, see :data:`CHILD_UNDO`)."""
    if target not in ALLOWED[source] and not (child_undo and (source, target) == CHILD_UNDO):
        raise IllegalTransitionError(source.value, target.value)
