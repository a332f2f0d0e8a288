"""Errors raised by saga_actors.

One root, :class:`SagaError`. Using the library wrong (a malformed definition, bad input,
an unknown saga type) is the :class:`SagaUsageError` family and is raised before anything
is journaled. A saga failing at run time is the :class:`SagaRuntimeError` family.

Every error pickles (Ray ships exceptions between processes): each class passes all of its
constructor arguments to ``Exception.__init__`` (the default ``__reduce__`` rebuilds it).
"""

from __future__ import annotations


class SagaError(Exception):
    """Root of every error this library raises."""


# --- using the library wrong ----------------------------------------------------------


class SagaUsageError(SagaError):
    """The library was used wrong; nothing was journaled or started."""


class SagaDefinitionError(SagaUsageError):
    """A saga definition is malformed."""

    def __init__(self, saga: str, problem: str) -> None:
        super().__init__(saga, problem)
        self.saga = saga
        self.problem = problem

    def __str__(self) -> str:
        return f"saga definition {self.saga!r} is invalid: {self.problem}"


class SagaInputError(SagaUsageError):
    """A saga's input does not validate against its input model."""

    def __init__(self, saga_type: str, details: str) -> None:
        super().__init__(saga_type, details)
        self.saga_type = saga_type
        self.details = details

    def __str__(self) -> str:
        return f"invalid input for saga {self.saga_type!r}: {self.details}"


class UnknownSagaTypeError(SagaUsageError):
    """No saga definition is registered under this name."""

    def __init__(self, saga_type: str, known: tuple[str, ...] = ()) -> None:
        super().__init__(saga_type, known)
        self.saga_type = saga_type
        self.known = tuple(known)

    def __str__(self) -> str:
        known = ", ".join(sorted(self.known)) or "none"
        return f"unknown saga type {self.saga_type!r} (registered: {known})"


class UnknownParticipantError(SagaUsageError):
    """A step names a participant (or a method) that is not running or not declared."""

    def __init__(self, participant: str, method: str | None = None, reason: str = "") -> None:
        super().__init__(participant, method, reason)
        self.participant = participant
        self.method = method
        self.reason = reason

    def __str__(self) -> str:
        what = f"participant {self.participant!r}"
        if self.method:
            what += f" method {self.method!r}"
        return f"unknown {what}" + (f": {self.reason}" if self.reason else "")


class ParticipantPlacementError(SagaUsageError):
    """A participant no node can hold (the resources or labels it asks Ray for)."""

    def __init__(self, participant: str, reason: str) -> None:
        super().__init__(participant, reason)
        self.participant = participant
        self.reason = reason

    def __str__(self) -> str:
        return f"participant {self.participant!r} cannot be placed: {self.reason}"


class SagaConflictError(SagaUsageError):
    """A saga id is already taken by a saga of another type or with another input."""

    def __init__(self, saga_id: str, reason: str) -> None:
        super().__init__(saga_id, reason)
        self.saga_id = saga_id
        self.reason = reason

    def __str__(self) -> str:
        return f"saga {self.saga_id!r} already exists: {self.reason}"


class InvalidSagaIdError(SagaUsageError):
    """A caller-chosen saga id that is not 1-128 letters, digits, ``_ . : -``."""

    def __init__(self, saga_id: object) -> None:
        super().__init__(saga_id)
        self.saga_id = saga_id

    def __str__(self) -> str:
        return (f"saga_id {self.saga_id!r} must be 1-128 characters of letters, digits, "
                "_ . : -")


class UnknownPlacementError(SagaUsageError):
    """A placement other than ``dedicated`` or ``hosted``."""

    def __init__(self, placement: object, known: tuple[str, ...] = ("dedicated", "hosted")) -> None:
        super().__init__(placement, known)
        self.placement = placement
        self.known = tuple(known)

    def __str__(self) -> str:
        return f"unknown placement {self.placement!r} (known: {', '.join(self.known)})"


class ConfigError(SagaUsageError):
    """A runtime setting that does not exist or has a bad value (from an argument or from
    its ``SAGA_ACTORS_*`` environment variable)."""

    def __init__(self, setting: str, value: object, source: str, problem: str) -> None:
        super().__init__(setting, value, source, problem)
        self.setting = setting
        self.value = value
        self.source = source
        self.problem = problem

    def __str__(self) -> str:
        return (f"setting {self.setting!r} = {self.value!r} (from {self.source}): "
                f"{self.problem}")


class UnknownEventError(SagaUsageError):
    """An event a choreography does not declare, or one it does not take from outside (only
    its start event starts a saga; the rest are published by its reactions)."""

    def __init__(self, event_type: str, choreography: str, reason: str) -> None:
        super().__init__(event_type, choreography, reason)
        self.event_type = event_type
        self.choreography = choreography
        self.reason = reason

    def __str__(self) -> str:
        return f"event {self.event_type!r} of {self.choreography!r}: {self.reason}"


class SagaNotFoundError(SagaUsageError):
    """No saga with this id is in the journal."""

    def __init__(self, saga_id: str) -> None:
        super().__init__(saga_id)
        self.saga_id = saga_id

    def __str__(self) -> str:
        return f"no saga with id {self.saga_id!r}"


class SignalError(SagaUsageError):
    """A signal (or an event from outside) that cannot be sent: nothing was journaled."""


class UnknownSignalError(SignalError):
    """The saga has no wait step that takes a signal of this name (or it took one)."""

    def __init__(self, saga_id: str, name: str, reason: str) -> None:
        super().__init__(saga_id, name, reason)
        self.saga_id = saga_id
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"signal {self.name!r} for saga {self.saga_id}: {self.reason}"


class SignalPayloadError(SignalError):
    """A signal's payload does not validate against its wait step's payload model."""

    def __init__(self, saga_id: str, name: str, details: str) -> None:
        super().__init__(saga_id, name, details)
        self.saga_id = saga_id
        self.name = name
        self.details = details

    def __str__(self) -> str:
        return f"invalid payload for signal {self.name!r} of saga {self.saga_id}: {self.details}"


class SagaFinishedError(SignalError):
    """The saga has ended: nothing waits for a signal (or an event from outside) any more."""

    def __init__(self, saga_id: str, status: str, what: str = "signals") -> None:
        super().__init__(saga_id, status, what)
        self.saga_id = saga_id
        self.status = status
        self.what = what

    def __str__(self) -> str:
        return f"saga {self.saga_id} is {self.status}: it takes no more {self.what}"


class EventPayloadError(SignalError):
    """An event from outside whose payload fails its event's model."""

    def __init__(self, event_type: str, saga_id: str, details: str) -> None:
        super().__init__(event_type, saga_id, details)
        self.event_type = event_type
        self.saga_id = saga_id
        self.details = details

    def __str__(self) -> str:
        return f"invalid event {self.event_type!r} for saga {self.saga_id}: {self.details}"


class UncorrelatedEventError(UnknownEventError):
    """An event from outside whose correlation value finds no saga (or several running)."""


class JournalError(SagaError):
    """The journal cannot be opened, read or written."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(url, problem)
        self.url = url
        self.problem = problem

    def __str__(self) -> str:
        return f"journal {self.url}: {self.problem}"


class ParticipantStoreError(SagaError):
    """A participant's store cannot be used (a newer schema, someone else's file)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"participant store {self.path}: {self.problem}"


class StoreUnavailableError(ParticipantStoreError):
    """A participant's store server is out of reach right now (a restart, a dropped
    connection). The participant waits for it and applies the effect when it is back."""


class ClusterUnreachableError(SagaError):
    """Nothing answers at the Ray cluster address given."""

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(address, detail)
        self.address = address
        self.detail = detail

    def __str__(self) -> str:
        return f"cannot reach the Ray cluster at {self.address}: {self.detail}"


# --- a saga failing at run time -------------------------------------------------------


class SagaRuntimeError(SagaError):
    """Something went wrong while a saga ran."""


class StepError(SagaRuntimeError):
    """A participant raised this to fail a step; ``retryable=False`` stops the retries.

    Participants raise it (or a subclass) with a message for the operator. Any other
    exception a participant raises is retryable unless the step's retry policy lists its
    type name as non-retryable.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable)
        self.message = message
        self.retryable = retryable

    def __reduce__(self):  # keyword-only argument: rebuild explicitly
        return (_rebuild_step_error, (type(self), self.message, self.retryable))

    def __str__(self) -> str:
        return self.message


def _rebuild_step_error(cls: type[StepError], message: str, retryable: bool) -> StepError:
    return cls(message, retryable=retryable)


class NonRetryableError(StepError):
    """A step failure that retrying cannot fix (card declined, out of stock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)

    def __reduce__(self):
        return (type(self), (self.message,))


class ActionRefusedError(NonRetryableError):
    """The action's idempotency key was tombstoned by an earlier compensation."""


class StepTimeoutError(SagaRuntimeError):
    """A participant call did not answer within the step's timeout (it was cancelled)."""

    def __init__(self, saga_id: str, step: str, attempt: int, timeout_s: float) -> None:
        super().__init__(saga_id, step, attempt, timeout_s)
        self.saga_id = saga_id
        self.step = step
        self.attempt = attempt
        self.timeout_s = timeout_s

    def __str__(self) -> str:
        return (
            f"saga {self.saga_id} step {self.step!r} attempt {self.attempt} "
            f"timed out after {self.timeout_s:g}s"
        )


class ParticipantUnavailableError(SagaRuntimeError):
    """The participant's actor died or is unreachable: the call's outcome is unknown."""

    def __init__(self, participant: str, detail: str) -> None:
        super().__init__(participant, detail)
        self.participant = participant
        self.detail = detail

    def __str__(self) -> str:
        return f"participant {self.participant!r} unavailable (outcome unknown): {self.detail}"


class SagaWaitTimeoutError(SagaRuntimeError):
    """``wait`` gave up before the saga reached a terminal state."""

    def __init__(self, saga_id: str, status: str, timeout_s: float) -> None:
        super().__init__(saga_id, status, timeout_s)
        self.saga_id = saga_id
        self.status = status
        self.timeout_s = timeout_s

    def __str__(self) -> str:
        return (
            f"saga {self.saga_id} still {self.status} after waiting {self.timeout_s:g}s"
        )


class RunnerUnavailableError(SagaRuntimeError):
    """The actor that runs a saga (its own, or its host) did not answer a request in time,
    or is gone. The request's outcome is unknown (a stalled actor may still act on it);
    operator requests are safe to ask again."""

    def __init__(self, saga_id: str, runner: str, request: str, detail: str) -> None:
        super().__init__(saga_id, runner, request, detail)
        self.saga_id = saga_id
        self.runner = runner
        self.request = request
        self.detail = detail

    def __str__(self) -> str:
        return (f"saga {self.saga_id}: {self.runner} did not answer {self.request} "
                f"({self.detail}); it may still act on it when it answers again: look with "
                f"`saga-actors show {self.saga_id}`, or ask again (asking twice is safe)")


class DefinitionStoreError(SagaRuntimeError):
    """The cluster's store of saga definitions (Ray's internal KV) could not be read: not
    knowing is not the same as nobody having registered it, so nothing is journaled and
    the saga is tried again later."""

    def __init__(self, saga_type: str, version: int, detail: str) -> None:
        super().__init__(saga_type, version, detail)
        self.saga_type = saga_type
        self.version = version
        self.detail = detail

    def __str__(self) -> str:
        return (f"cannot read the definition of {self.saga_type!r} v{self.version} from the "
                f"cluster's definitions: {self.detail}")


class SagaActorLost(SagaRuntimeError):
    """A saga's actor is gone for good; the supervisor restarts it from the journal."""

    def __init__(self, saga_id: str, detail: str) -> None:
        super().__init__(saga_id, detail)
        self.saga_id = saga_id
        self.detail = detail

    def __str__(self) -> str:
        return f"actor of saga {self.saga_id} lost: {self.detail}"
