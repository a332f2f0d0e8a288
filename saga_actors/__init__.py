"""saga_actors: a durable saga runtime for Ray.

Every public name is imported on first use (PEP 562): a process that needs a few of them
(a participant's or a saga's Ray actor, which starts in a new process for each actor)
does not pay for the rest, and ``SagaRuntime`` (the one name that needs Ray) is not
imported by the Ray-free core (definitions, the state machine, the journal, participants).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saga_actors.config import RuntimeConfig
    from saga_actors.errors import (
        ActionRefusedError,
        ClusterUnreachableError,
        ConfigError,
        DefinitionStoreError,
        EventPayloadError,
        InvalidSagaIdError,
        JournalError,
        NonRetryableError,
        ParticipantPlacementError,
        ParticipantStoreError,
        ParticipantUnavailableError,
        RunnerUnavailableError,
        SagaConflictError,
        SagaDefinitionError,
        SagaError,
        SagaFinishedError,
        SagaInputError,
        SagaNotFoundError,
        SagaRuntimeError,
        SagaUsageError,
        SagaWaitTimeoutError,
        SignalError,
        SignalPayloadError,
        StepError,
        StepTimeoutError,
        StoreUnavailableError,
        UncorrelatedEventError,
        UnknownEventError,
        UnknownParticipantError,
        UnknownPlacementError,
        UnknownSagaTypeError,
        UnknownSignalError,
    )
    from saga_actors.journal.base import JournalConflictError
    from saga_actors.logging import configure_logging
    from saga_actors.model.choreography import Choreography, Reaction
    from saga_actors.model.definition import (
        Child,
        Parallel,
        RetryPolicy,
        Saga,
        Step,
        StepKind,
        Wait,
    )
    from saga_actors.model.records import SagaRecord, Signal, Transition
    from saga_actors.model.state import SagaStatus
    from saga_actors.participant.base import Participant
    from saga_actors.participant.handlers import StepContext, action, compensation
    from saga_actors.runtime import SagaRuntime

_WHERE = {
    "ActionRefusedError": "saga_actors.errors",
    "Child": "saga_actors.model.definition",
    "Choreography": "saga_actors.model.choreography",
    "ClusterUnreachableError": "saga_actors.errors",
    "DefinitionStoreError": "saga_actors.errors",
    "ConfigError": "saga_actors.errors",
    "InvalidSagaIdError": "saga_actors.errors",
    "JournalConflictError": "saga_actors.journal.base",
    "JournalError": "saga_actors.errors",
    "NonRetryableError": "saga_actors.errors",
    "Parallel": "saga_actors.model.definition",
    "Participant": "saga_actors.participant.base",
    "ParticipantPlacementError": "saga_actors.errors",
    "ParticipantStoreError": "saga_actors.errors",
    "ParticipantUnavailableError": "saga_actors.errors",
    "Reaction": "saga_actors.model.choreography",
    "RetryPolicy": "saga_actors.model.definition",
    "RunnerUnavailableError": "saga_actors.errors",
    "RuntimeConfig": "saga_actors.config",
    "Saga": "saga_actors.model.definition",
    "SagaConflictError": "saga_actors.errors",
    "SagaDefinitionError": "saga_actors.errors",
    "SagaError": "saga_actors.errors",
    "SagaFinishedError": "saga_actors.errors",
    "EventPayloadError": "saga_actors.errors",
    "SagaInputError": "saga_actors.errors",
    "SagaNotFoundError": "saga_actors.errors",
    "SagaRecord": "saga_actors.model.records",
    "SagaRuntime": "saga_actors.runtime",
    "SagaRuntimeError": "saga_actors.errors",
    "SagaStatus": "saga_actors.model.state",
    "SagaUsageError": "saga_actors.errors",
    "SagaWaitTimeoutError": "saga_actors.errors",
    "Signal": "saga_actors.model.records",
    "SignalError": "saga_actors.errors",
    "SignalPayloadError": "saga_actors.errors",
    "Step": "saga_actors.model.definition",
    "StepContext": "saga_actors.participant.handlers",
    "StepError": "saga_actors.errors",
    "StepKind": "saga_actors.model.definition",
    "StepTimeoutError": "saga_actors.errors",
    "StoreUnavailableError": "saga_actors.errors",
    "Transition": "saga_actors.model.records",
    "UncorrelatedEventError": "saga_actors.errors",
    "UnknownEventError": "saga_actors.errors",
    "UnknownParticipantError": "saga_actors.errors",
    "UnknownPlacementError": "saga_actors.errors",
    "UnknownSagaTypeError": "saga_actors.errors",
    "UnknownSignalError": "saga_actors.errors",
    "Wait": "saga_actors.model.definition",
    "action": "saga_actors.participant.handlers",
    "compensation": "saga_actors.participant.handlers",
    "configure_logging": "saga_actors.logging",
}

__all__ = [
    "ActionRefusedError",
    "Child",
    "Choreography",
    "ClusterUnreachableError",
    "ConfigError",
    "DefinitionStoreError",
    "EventPayloadError",
    "InvalidSagaIdError",
    "JournalConflictError",
    "JournalError",
    "NonRetryableError",
    "Parallel",
    "Participant",
    "ParticipantPlacementError",
    "ParticipantStoreError",
    "ParticipantUnavailableError",
    "Reaction",
    "RetryPolicy",
    "RunnerUnavailableError",
    "RuntimeConfig",
    "Saga",
    "SagaConflictError",
    "SagaDefinitionError",
    "SagaError",
    "SagaFinishedError",
    "SagaInputError",
    "SagaNotFoundError",
    "SagaRecord",
    "SagaRuntime",
    "SagaRuntimeError",
    "SagaStatus",
    "SagaUsageError",
    "SagaWaitTimeoutError",
    "Signal",
    "SignalError",
    "SignalPayloadError",
    "Step",
    "StepContext",
    "StepError",
    "StepKind",
    "StepTimeoutError",
    "StoreUnavailableError",
    "Transition",
    "UncorrelatedEventError",
    "UnknownEventError",
    "UnknownParticipantError",
    "UnknownPlacementError",
    "UnknownSagaTypeError",
    "UnknownSignalError",
    "Wait",
    "action",
    "compensation",
    "configure_logging",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'saga_actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
