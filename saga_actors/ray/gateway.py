"""How a saga instance calls participant actors over Ray.

One call is one Ray task named ``<saga_id>/<step>``. In a host, where many sagas run in one
event loop, the calls that several sagas make to the same participant in the same loop turn
travel as ONE Ray task (``call_many``) named with every ``<saga_id>/<step>`` it carries:
Ray's per-call cost is most of a hosted saga's CPU, and a batch pays it once. Each request
in a batch keeps its own timeout, cancellation, resend and reply; a batch of one is a plain
call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ray
from loguru import logger
from ray.exceptions import (
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayTaskError,
    TaskCancelledError,
)

from saga_actors.constants import participant_actor_name, shard_of
from saga_actors.errors import ParticipantUnavailableError, StepTimeoutError
from saga_actors.model.messages import StepReply, StepRequest
from saga_actors.ray.deployments import ReplicaCounts

RESEND_EVERY_S = 0.2  # while an actor restarts: often enough to lose little time, rarely
# enough that a restart of a few seconds costs a handful of calls
MAX_ERROR_CHARS = 2000  # of a participant's own crash, in its reply (a traceback can be huge)
T = TypeVar("T")
MAX_BATCH = 64  # requests in one Ray task (a batch is one of the participant's call slots)


def get_riding_restarts(submit: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """``ray.get(submit())``, asked again while the actor is restarting (a supervisor or
    participant being restarted must not fail a client's call)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(submit(), timeout=timeout_s)
        except ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(RESEND_EVERY_S)


async def ride_restarts(send: Callable[[], Awaitable[T]], *, deadline: float | None = None,
                        what: str = "") -> T:
    """``await send()``, sent again every ``RESEND_EVERY_S`` while Ray restarts the actor
    (``ActorUnavailableError``: the outcome is unknown, and resending the same request is
    safe). Past ``deadline`` (loop time) the last ``ActorUnavailableError`` is raised. The
    asyncio twin of :func:`get_riding_restarts`."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await send()
        except ActorUnavailableError:
            if deadline is not None and loop.time() + RESEND_EVERY_S >= deadline:
                raise
            if what:
                logger.info("{}: its actor is restarting; sending again", what)
            await asyncio.sleep(RESEND_EVERY_S)


def get_actor(name: str, namespace: str) -> Any | None:
    """The named actor, or None."""
    try:
        return ray.get_actor(name, namespace)
    except ValueError:
        return None


class RayGateway:
    """Calls participant actors; see the module docstring for batching."""

    def __init__(self, namespace: str, *, name_tasks: bool = True, batch: bool = False) -> None:
        self._namespace = namespace
        self._name_tasks = name_tasks
        self._batch = batch
        self._handles: dict[str, Any] = {}  # by actor name (a replica's own)
        self._seeded: set[str] = set()  # handles given, not looked up here
        self._queues: dict[str, list[_Pending]] = {}  # by actor name
        self._replicas = ReplicaCounts(namespace)
        self.sent = {"ray_calls": 0, "requests": 0}  # how well batching does

    def actor_name(self, participant: str, saga_id: str) -> str:
        """The replica that serves ``saga_id``'s calls to ``participant``: the same one
        for every call of the saga (a stable hash of its id), while the count holds."""
        n = self._replicas.of(participant)
        # (salted by the participant: not the same split as the hosts' shards)
        return participant_actor_name(
            participant, shard_of(f"{participant}/{saga_id}", n) if n > 1 else 0)

    def _handle(self, participant: str, saga_id: str) -> tuple[str, Any]:
        name = self.actor_name(participant, saga_id)
        handle = self._handles.get(name)
        if handle is None:
            handle = get_actor(name, self._namespace)
            if handle is None:
                self._replicas.forget(participant)
                raise ParticipantUnavailableError(participant, f"no actor {name}")
            self._handles[name] = handle
        return name, handle

    def _drop(self, participant: str, name: str) -> None:
        """A replica's actor is gone (died, or scaled away): look both up again."""
        self._handles.pop(name, None)
        self._replicas.forget(participant)

    def seed(self, handles: dict[str, Any]) -> None:
        """Participant handles someone already looked up (saves a GCS lookup each)."""
        named = {participant_actor_name(p): h for p, h in handles.items()}
        self._handles.update(named)
        self._seeded.update(named)

    async def call(self, participant: str, request: StepRequest, timeout_s: float) -> StepReply:
        """One attempt. While Ray restarts the participant (ActorUnavailableError: outcome
        unknown) the same request is sent again within the attempt's timeout; the
        participant's idempotency makes that safe, and a restart costs no attempt. A
        given handle whose actor is gone is looked up by name and sent again, once (the
        participant may have been deployed anew under its name)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        payload = request.model_dump()
        while True:
            try:
                return await ride_restarts(
                    lambda: self._call_once(participant, request, payload, deadline,
                                            timeout_s),
                    deadline=deadline, what=request.key)
            except ActorUnavailableError:
                raise ParticipantUnavailableError(participant, "ActorUnavailableError: "
                                                  "restarting past the step timeout") from None
            except ParticipantUnavailableError:
                name = self.actor_name(participant, request.saga_id)
                dropped = name not in self._handles  # its actor is gone
                if name not in self._seeded or not dropped or loop.time() >= deadline:
                    raise
                self._seeded.discard(name)  # look it up by name, and send again

    async def _call_once(self, participant: str, request: StepRequest, payload: dict,
                         deadline: float, timeout_s: float) -> StepReply:
        loop = asyncio.get_running_loop()
        name, handle = self._handle(participant, request.saga_id)
        reply, stop = (self._enqueue(name, handle, request, payload) if self._batch
                       else self._send(handle, request, payload))
        # a bare future and a timer: no Task per call (cheaper than asyncio.wait)
        expired: list[bool] = []
        timer = loop.call_at(deadline, _expire, reply, expired)
        try:
            result = await reply
        except asyncio.CancelledError:
            stop()  # stop it on the participant, not just stop waiting
            me = asyncio.current_task()
            if expired and not (me is not None and me.cancelling()):  # ours, not a cancel
                raise StepTimeoutError(request.saga_id, request.step, request.attempt,
                                       timeout_s) from None
            raise
        except (RayActorError, GetTimeoutError) as exc:
            if isinstance(exc, ActorUnavailableError):
                raise  # restarting: ride_restarts sends it again
            self._drop(participant, name)
            raise ParticipantUnavailableError(participant, type(exc).__name__) from None
        except TaskCancelledError as exc:
            raise ParticipantUnavailableError(participant, f"call cancelled: {exc}") from None
        except RayTaskError as exc:  # the participant's handler itself broke
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return StepReply(ok=False, error_type=type(cause).__name__,
                             error=str(cause)[:MAX_ERROR_CHARS], retryable=True)
        finally:
            timer.cancel()
        return StepReply.model_construct(**result)

    async def fence(self, participant: str, saga_id: str, step: str,
                    timeout_s: float) -> dict[str, Any]:
        """:meth:`Participant.fence` of one action (rare: a pivot whose outcome is unknown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        async def once() -> dict[str, Any]:
            _, handle = self._handle(participant, saga_id)
            if not hasattr(handle, "fence"):
                raise ParticipantUnavailableError(participant, "it has no fence (deployed by an "
                                                  "older saga_actors)")
            ref = handle.fence.remote(saga_id, step)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(ref.future()),
                                              max(0.001, deadline - loop.time()))
            except TimeoutError:
                ray.cancel(ref)
                raise StepTimeoutError(saga_id, step, 0, timeout_s) from None

        try:
            return await ride_restarts(once, deadline=deadline)
        except ActorUnavailableError:
            raise ParticipantUnavailableError(participant, "ActorUnavailableError: restarting "
                                              "past the timeout") from None
        except (RayActorError, GetTimeoutError, TaskCancelledError, RayTaskError) as exc:
            self._drop(participant, self.actor_name(participant, saga_id))
            raise ParticipantUnavailableError(participant, f"fence: {type(exc).__name__}") \
                from None

    def _send(self, handle: Any, request: StepRequest,
              payload: dict) -> tuple[asyncio.Future, Callable[[], None]]:
        """One request as one Ray task: its reply and how to stop it."""
        method = handle.call.options(name=request.task_name) if self._name_tasks else handle.call
        ref = method.remote(payload)
        self.sent["ray_calls"] += 1
        self.sent["requests"] += 1

        def stop() -> None:
            ray.cancel(ref)  # stops it while it waits to be sent or to start
            # and in case Ray's cancel is lost as the task starts (ray-project/ray#52628)
            if hasattr(handle, "cancel_calls"):
                handle.cancel_calls.remote([request.call_id])

        return asyncio.wrap_future(ref.future()), stop

    def _enqueue(self, participant: str, handle: Any, request: StepRequest,
                 payload: dict) -> tuple[asyncio.Future, Callable[[], None]]:
        """Queue a request for this loop turn's batch to ``participant`` (the actor name
        of one replica)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(request, payload, loop.create_future(), handle)
        queue = self._queues.setdefault(participant, [])
        queue.append(pending)
        if len(queue) == 1:
            loop.call_soon(self._flush, participant)
        return pending.reply, pending.stop

    def _flush(self, participant: str) -> None:
        """Send every request queued for ``participant`` (cancelled ones are dropped)."""
        queued = [p for p in self._queues.pop(participant, []) if not p.reply.done()]
        for i in range(0, len(queued), MAX_BATCH):
            chunk = queued[i:i + MAX_BATCH]
            try:
                if len(chunk) == 1 or not hasattr(chunk[0].handle, "call_many"):
                    # (a participant deployed by an older saga_actors has no call_many)
                    for pending in chunk:
                        self._send_lone(pending)
                else:
                    self._send_batch(chunk)
            except Exception as exc:  # noqa: BLE001 - not sent: each caller gets the error
                for pending in chunk:
                    if not pending.reply.done():
                        pending.reply.set_exception(exc)

    def _send_lone(self, pending: _Pending) -> None:
        sent, stop = self._send(pending.handle, pending.request, pending.payload)
        pending.sent(stop)
        sent.add_done_callback(lambda f: _fan_out([pending], f, lone=True))

    def _send_batch(self, chunk: list[_Pending]) -> None:
        handle = chunk[0].handle
        method = handle.call_many
        if self._name_tasks:
            method = method.options(name=",".join(p.request.task_name for p in chunk))
        ref = method.remote([p.payload for p in chunk])
        self.sent["ray_calls"] += 1
        self.sent["requests"] += len(chunk)
        for p in chunk:
            p.sent(lambda i=p.request.call_id: handle.cancel_calls.remote([i]))
        asyncio.wrap_future(ref.future()).add_done_callback(lambda f: _fan_out(chunk, f))


class _Pending:
    """A request waiting for its batch, then for its reply."""

    __slots__ = ("_stop", "handle", "payload", "reply", "request")

    def __init__(self, request: StepRequest, payload: dict, reply: asyncio.Future,
                 handle: Any) -> None:
        self.request = request
        self.payload = payload
        self.reply = reply
        self.handle = handle
        self._stop: Callable[[], Any] | None = None

    def sent(self, stop: Callable[[], Any]) -> None:
        self._stop = stop

    def stop(self) -> None:
        """Cancelled before its batch left: it is simply not sent. Afterwards: the
        participant is told to stop it (only it, not the rest of its batch)."""
        if self._stop is not None:
            self._stop()


def _fan_out(chunk: list[_Pending], sent: asyncio.Future, *, lone: bool = False) -> None:
    """A call's replies (a batch's list, or a lone call's one reply), or its failure, to
    each request still waiting."""
    error = None if sent.cancelled() else sent.exception()  # retrieved even if unused
    results = None if sent.cancelled() or error is not None else sent.result()
    if lone and results is not None:
        results = [results]
    for i, pending in enumerate(chunk):
        if pending.reply.done():
            continue
        if results is not None:
            pending.reply.set_result(results[i])
        elif error is not None:
            pending.reply.set_exception(error)
        else:
            pending.reply.cancel()


def _expire(reply: asyncio.Future, expired: list[bool]) -> None:
    if not reply.done():
        expired.append(True)
        reply.cancel()
