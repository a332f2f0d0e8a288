"""saga_actors: a durable saga runtime for Ray.

``SagaRuntime`` (the one name that needs Ray) is imported on first use, so the Ray-free
core (definitions, the state machine, the journal, participants) imports without Ray.
"""

from saga_actors.choreography import Choreography, Reaction
from saga_actors.config import RuntimeConfig
from saga_actors.definition import Child, Parallel, RetryPolicy, Saga, Step, StepKind, Wait
from saga_actors.errors import (
    ActionRefusedError,
    ClusterUnreachableError,
    ConfigError,
    InvalidSagaIdError,
    JournalError,
    NonRetryableError,
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
    UnknownEventError,
    UnknownParticipantError,
    UnknownPlacementError,
    UnknownSagaTypeError,
    UnknownSignalError,
)
from saga_actors.handlers import StepContext, action, compensation
from saga_actors.journal.base import JournalConflictError
from saga_actors.logging import configure_logging
from saga_actors.participant import Participant
from saga_actors.records import SagaRecord, Signal, Transition
from saga_actors.state import SagaStatus

__all__ = [
    "ActionRefusedError",
    "Child",
    "Choreography",
    "ClusterUnreachableError",
    "ConfigError",
    "InvalidSagaIdError",
    "JournalConflictError",
    "JournalError",
    "NonRetryableError",
    "Parallel",
    "Participant",
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
    if name == "SagaRuntime":
        from saga_actors.runtime import SagaRuntime

        return SagaRuntime
    raise AttributeError(f"module 'saga_actors' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
