"""The ONE place Ray actor classes and their options are made.

Actors are thin shells: :class:`SagaActor` wraps :class:`SagaInstance`, a participant actor
wraps a :class:`Participant` subclass. Names and the namespace come from
:mod:`saga_actors.constants`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import ray
from loguru import logger
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, TaskCancelledError

from saga_actors.config import RuntimeConfig
from saga_actors.constants import participant_actor_name, saga_actor_name
from saga_actors.definition import Saga
from saga_actors.errors import ParticipantUnavailableError, StepTimeoutError
from saga_actors.instance import SagaInstance
from saga_actors.journal import open_journal
from saga_actors.logging import configure_logging
from saga_actors.messages import StepReply, StepRequest
from saga_actors.participant import Participant


class RayGateway:
    """Calls participant actors as Ray tasks named ``<saga_id>/<step>``."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._handles: dict[str, Any] = {}

    def _handle(self, participant: str) -> Any:
        handle = self._handles.get(participant)
        if handle is None:
            try:
                handle = ray.get_actor(participant_actor_name(participant), self._namespace)
            except ValueError as exc:
                raise ParticipantUnavailableError(participant, str(exc)) from None
            self._handles[participant] = handle
        return handle

    async def call(self, participant: str, request: StepRequest, timeout_s: float) -> StepReply:
        handle = self._handle(participant)
        ref = handle.handle.options(name=request.task_name).remote(request.model_dump())
        try:
            done, _ = await asyncio.wait({asyncio.ensure_future(ref)}, timeout=timeout_s)
        except asyncio.CancelledError:
            ray.cancel(ref)
            raise
        if not done:
            ray.cancel(ref)  # stop it on the participant, not just stop waiting
            raise StepTimeoutError(request.saga_id, request.step, request.attempt, timeout_s)
        try:
            return done.pop().result()
        except (RayActorError, GetTimeoutError) as exc:
            self._handles.pop(participant, None)
            raise ParticipantUnavailableError(participant, type(exc).__name__) from None
        except TaskCancelledError as exc:
            raise ParticipantUnavailableError(participant, f"call cancelled: {exc}") from None
        except RayTaskError as exc:  # the participant's handler itself broke
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return StepReply(
                ok=False, error_type=type(cause).__name__, error=str(cause)[:2000], retryable=True
            )


class SagaActorImpl:
    """One saga instance in its own Ray actor; resumes from the journal on every start."""

    def __init__(self, definition: Saga, saga_id: str, config: RuntimeConfig) -> None:
        configure_logging("saga", config.log_level)
        self._saga_id = saga_id
        journal = open_journal(config.journal)
        record = journal.load(saga_id)
        if record is None:
            raise LookupError(f"saga {saga_id} is not in the journal {config.journal}")
        self.instance = SagaInstance(definition, record, journal, RayGateway(config.namespace))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            record = await self.instance.run()
            logger.bind(saga_id=self._saga_id).info("saga ended {}", record.status.value)
        except Exception:
            # A bug or a lost journal: die so Ray restarts the actor and it resumes from
            # the journal, rather than leave a live actor whose saga never moves.
            logger.bind(saga_id=self._saga_id).exception("saga instance crashed; restarting")
            os._exit(1)
        # Done: free the process. The journal holds the outcome.
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def status(self) -> dict[str, Any]:
        """The instance's current record."""
        return self.instance.record.model_dump(mode="json")

    async def cancel(self, reason: str) -> bool:
        """Abort and compensate; False once past the pivot or already compensating."""
        return self.instance.request_cancel(reason)

    def __repr__(self) -> str:
        return f"SagaActor({saga_actor_name(self._saga_id)})"


SagaActor = ray.remote(SagaActorImpl)


def saga_actor_options(saga_id: str, config: RuntimeConfig) -> dict[str, Any]:
    """Options of a dedicated saga actor: named, detached, restarted by Ray."""
    return {
        "name": saga_actor_name(saga_id),
        "namespace": config.namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_concurrency": 1000,
        "num_cpus": 0,
        "get_if_exists": True,
    }


def spawn_saga_actor(definition: Saga, saga_id: str, config: RuntimeConfig) -> Any:
    """Create (or find) the actor of ``saga_id``; it starts running at once."""
    return SagaActor.options(**saga_actor_options(saga_id, config)).remote(
        definition, saga_id, config
    )


class ParticipantShell:
    """Mixin for the Ray actor class made from a :class:`Participant` subclass."""

    def __init__(self, *args: Any, log_level: str = "INFO", **kwargs: Any) -> None:
        configure_logging("participant", log_level)
        super().__init__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Participant({participant_actor_name(self.participant_name)})"  # type: ignore[attr-defined]


def participant_actor_class(cls: type[Participant]) -> Any:
    """The Ray actor class of a participant type."""
    shell = type(cls.__name__, (ParticipantShell, cls), {"__module__": cls.__module__})
    return ray.remote(shell)


def deploy_participant(
    cls: type[Participant],
    config: RuntimeConfig,
    *,
    name: str | None = None,
    faults: dict | None = None,
    **kwargs: Any,
) -> Any:
    """Start (or find) participant actor ``participant:<name>`` and wait until it serves.

    It is detached and restarted by Ray forever; its store survives restarts.
    """
    pname = name or cls.name or cls.__name__.lower()
    actor = participant_actor_class(cls).options(
        name=participant_actor_name(pname),
        namespace=config.namespace,
        lifetime="detached",
        max_restarts=-1,
        max_concurrency=1000,
        num_cpus=0,
        get_if_exists=True,
    ).remote(
        store_path=str(config.participant_store(pname)),
        name=pname,
        faults=faults,
        log_level=config.log_level,
        **kwargs,
    )
    ray.get(actor.describe.remote())
    if faults is not None:
        ray.get(actor.set_faults.remote(faults))
    return actor

