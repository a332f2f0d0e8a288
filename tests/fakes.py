"""Fakes for unit tests of the state machine: a clock and a scripted gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from saga_actors.errors import ParticipantUnavailableError, StepTimeoutError
from saga_actors.model.messages import StepReply, StepRequest
from saga_actors.testing.testkit import FakeClock  # the users' test kit's clock

__all__ = ["FakeClock", "FakeFleet", "FakeGateway", "died", "fail", "ok", "timeout", "until"]


Behaviour = Callable[[StepRequest], Any]


def ok(output: dict | None = None) -> Behaviour:
    return lambda req: StepReply(ok=True, output=output or {})


def fail(error_type: str = "StepError", *, retryable: bool = True) -> Behaviour:
    return lambda req: StepReply(ok=False, error_type=error_type, error="boom", retryable=retryable)


def timeout() -> Behaviour:
    def raise_timeout(req: StepRequest) -> Any:
        raise StepTimeoutError(req.saga_id, req.step, req.attempt, 1.0)

    return raise_timeout


def died() -> Behaviour:
    def raise_died(req: StepRequest) -> Any:
        raise ParticipantUnavailableError("p", "ActorDiedError")

    return raise_died


class FakeGateway:
    """Answers each (step, kind) from a script: one behaviour per attempt, the last repeats.

    Steps without a script succeed with ``{"<step>_done": True}``. Every call is recorded.
    """

    def __init__(self, script: dict[tuple[str, str], list[Behaviour]] | None = None) -> None:
        self.script = script or {}
        self.fences: dict[str, list[Callable[[], dict]]] = {}
        self.fenced: list[str] = []
        self.calls: list[StepRequest] = []
        self.on_call: Callable[[StepRequest], None] | None = None

    async def call(self, participant: str, request: StepRequest, timeout_s: float) -> StepReply:
        self.calls.append(request)
        if self.on_call:
            self.on_call(request)
        await asyncio.sleep(0)
        plan = self.script.get((request.step, request.kind))
        if not plan:
            return StepReply(ok=True, output={f"{request.step}_done": True})
        n = sum(1 for c in self.calls if (c.step, c.kind) == (request.step, request.kind))
        return plan[min(n, len(plan)) - 1](request)

    async def fence(self, participant: str, saga_id: str, step: str,
                    timeout_s: float) -> dict:
        """``fences[step]``: behaviours in turn (the last repeats), each returning the answer
        or raising; default: the action never applied."""
        self.fenced.append(step)
        await asyncio.sleep(0)
        plan = self.fences.get(step)
        if not plan:
            return {"applied": False, "output": None}
        return plan[min(self.fenced.count(step), len(plan)) - 1]()

    def called(self, kind: str | None = None) -> list[tuple[str, str, int]]:
        return [(c.step, c.kind, c.attempt) for c in self.calls if kind in (None, c.kind)]


class FakeFleet:
    """Runs each 'saga actor' as an asyncio task holding a real SagaInstance.

    ``hang`` makes the next spawn of a saga an actor that never progresses nor answers;
    ``slow_start`` holds a saga's actor "not yet started by Ray" until its event is set.
    """

    def __init__(self, journal, gateway: FakeGateway, clock: FakeClock) -> None:
        from saga_actors.engine.orchestration import SagaInstance

        self._make = lambda d, r: SagaInstance(d, r, journal, gateway, clock=clock)
        self.journal = journal
        self.spawned: list[str] = []
        self.alive: dict[str, asyncio.Task] = {}
        self.max_alive = 0
        self.hang: set[str] = set()
        self.slow_start: dict[str, asyncio.Event] = {}  # set the event: the actor is up
        self.killed: list[str] = []

    def spawn(self, definition, saga_id):
        self.spawned.append(saga_id)
        if saga_id in self.hang:
            self.hang.discard(saga_id)
            task = asyncio.ensure_future(asyncio.sleep(10**9))
            task.instance = None
        else:
            inst = self._make(definition, self.journal.load(saga_id))
            task = asyncio.ensure_future(self._run(inst, self.slow_start.get(saga_id)))
            task.instance = inst
        self.alive[saga_id] = task
        self.max_alive = max(self.max_alive, len(self.alive))
        return saga_id

    @staticmethod
    async def _run(inst, up):
        if up is not None:
            await up.wait()
        return await inst.run()

    async def watch(self, saga_id, handle, running):
        from saga_actors.errors import SagaActorLost

        task = self.alive[handle]
        if saga_id in self.slow_start:  # Ray has not started its process yet
            await self.slow_start[saga_id].wait()
        running()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            raise SagaActorLost(saga_id, "killed") from None
        finally:
            self.alive.pop(handle, None)

    async def nudge(self, handle, timeout_s):
        inst = getattr(self.alive.get(handle), "instance", None)
        if inst is None:
            return False
        inst.nudge()
        return True

    async def cancel(self, saga_id, handle, reason, timeout_s):
        inst = getattr(self.alive.get(handle), "instance", None)
        return "no live instance" if inst is None else await inst.cancel(reason)

    def kill(self, handle):
        self.killed.append(handle)
        task = self.alive.get(handle)
        if task:
            task.cancel()

    async def ensure_hosted(self, saga_ids, placement="hosted"):
        pass

    async def follow_cluster(self):
        return None  # a fixed number of hosts

    async def hosted(self, saga_id, method, *args, placement="hosted"):
        return "no host in this fake" if method == "cancel" else None


async def until(condition: Callable[[], Any], *, what: str, timeout_s: float = 10.0,
                every_s: float = 0.001) -> Any:
    """The asyncio twin of ``tests.conftest.poll``: the first truthy value of
    ``condition()`` (awaited if it is a coroutine); fails past the deadline, saying what."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(every_s)
