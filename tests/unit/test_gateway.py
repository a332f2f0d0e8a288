"""How the gateway forms batches, with a fake actor handle in place of Ray's."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from saga_actors.model.messages import StepRequest
from saga_actors.ray import gateway as gateway_module
from saga_actors.ray.gateway import MAX_BATCH, RayGateway


class _Ref:
    def __init__(self, result) -> None:
        self._future = concurrent.futures.Future()
        self._future.set_result(result)

    def future(self) -> concurrent.futures.Future:
        return self._future


class _Method:
    def __init__(self, handle: FakeHandle, name: str) -> None:
        self._handle, self._name, self._task = handle, name, None

    def options(self, *, name: str) -> _Method:
        method = _Method(self._handle, self._name)
        method._task = name
        return method

    def remote(self, arg):
        self._handle.sent.append((self._name, self._task, arg))
        if self._handle.broken:
            raise RuntimeError("cannot submit")
        if self._name == "call_many":
            return _Ref([{"ok": True, "output": {"n": a["saga_id"]}} for a in arg])
        return _Ref({"ok": True, "output": {"n": arg["saga_id"]}})


class FakeHandle:
    """Records what is sent; answers every request ok at once."""

    def __init__(self, *, batches: bool = True, broken: bool = False) -> None:
        self.sent: list[tuple[str, str | None, object]] = []
        self.broken = broken
        self.call = _Method(self, "call")
        if batches:
            self.call_many = _Method(self, "call_many")
            self.cancel_calls = _Method(self, "cancel_calls")


def request(saga_id: str) -> StepRequest:
    return StepRequest(saga_id=saga_id, saga_type="t", step="s", kind="action", method="m",
                       attempt=1)


def run_together(handle: FakeHandle, ids: list[str], *, cancel: set[str] = frozenset()):
    gw = RayGateway("ns", batch=True)
    gw._handles["participant:p"] = handle

    async def scenario():
        calls = {i: asyncio.ensure_future(gw.call("p", request(i), 30)) for i in ids}
        await asyncio.sleep(0)  # every call queued; the batch leaves on the next turn
        for i in cancel:
            calls[i].cancel()
        return await asyncio.gather(*calls.values(), return_exceptions=True)

    return gw, asyncio.run(scenario())


def test_calls_of_one_turn_leave_as_batches_of_at_most_max_batch():
    handle = FakeHandle()
    n = MAX_BATCH + 3
    gw, replies = run_together(handle, [f"s{i}" for i in range(n)])
    assert [r.output["n"] for r in replies] == [f"s{i}" for i in range(n)]
    assert [(m, len(a) if m == "call_many" else 1) for m, _, a in handle.sent] == [
        ("call_many", MAX_BATCH), ("call_many", 3)]
    assert handle.sent[1][1] == "s64/s,s65/s,s66/s"  # named after every call it carries
    assert gw.sent == {"ray_calls": 2, "requests": n}


def test_a_lone_call_is_a_plain_task_named_after_its_step():
    handle = FakeHandle()
    _, replies = run_together(handle, ["only"])
    assert replies[0].ok and handle.sent == [("call", "only/s", request("only").model_dump())]


def test_a_call_cancelled_before_its_batch_leaves_is_not_sent():
    handle = FakeHandle()
    _, replies = run_together(handle, ["a", "b", "c"], cancel={"b"})
    assert isinstance(replies[1], asyncio.CancelledError)
    assert [r["saga_id"] for _, _, batch in handle.sent for r in batch] == ["a", "c"]


def test_a_participant_without_call_many_gets_one_call_each():
    handle = FakeHandle(batches=False)  # deployed by an older saga_actors
    _, replies = run_together(handle, ["a", "b"])
    assert [r.ok for r in replies] == [True, True]
    assert [m for m, _, _ in handle.sent] == ["call", "call"]


def test_a_batch_that_cannot_be_submitted_fails_each_of_its_calls():
    handle = FakeHandle(broken=True)
    _, replies = run_together(handle, ["a", "b"])
    assert all(isinstance(r, RuntimeError) and "cannot submit" in str(r) for r in replies)


@pytest.fixture(autouse=True)
def _no_ray_cancel(monkeypatch):
    monkeypatch.setattr(gateway_module.ray, "cancel", lambda ref: None)


class _DeadRef:
    def future(self) -> concurrent.futures.Future:
        from ray.exceptions import ActorDiedError

        f = concurrent.futures.Future()
        f.set_exception(ActorDiedError())
        return f


class DeadHandle(FakeHandle):
    """A handle whose actor is gone (killed, and its name deployed anew)."""

    def __init__(self) -> None:
        super().__init__(batches=False)
        self.call = _DeadMethod(self)


class _DeadMethod(_Method):
    def __init__(self, handle) -> None:
        super().__init__(handle, "call")

    def options(self, *, name: str) -> _DeadMethod:
        return self

    def remote(self, arg):
        self._handle.sent.append(("call", None, arg))
        return _DeadRef()


def test_a_given_handle_whose_actor_is_gone_is_looked_up_by_name_and_sent_again_once(
        monkeypatch):
    """The supervisor hands a dedicated saga its participants' handles; if one's actor was
    replaced under its name since, the call goes to the new actor (same idempotency key),
    not to the step's failure. A handle the gateway looked up itself is not retried."""
    dead, fresh = DeadHandle(), FakeHandle(batches=False)
    looked_up = []

    def get_actor(name, namespace):
        looked_up.append(name)
        return fresh

    monkeypatch.setattr(gateway_module, "get_actor", get_actor)
    gw = RayGateway("ns")
    gw.seed({"p": dead})
    reply = asyncio.run(gw.call("p", request("s1"), 30))
    assert reply.ok and reply.output == {"n": "s1"}
    assert len(dead.sent) == 1 and len(fresh.sent) == 1 and looked_up == ["participant:p"]
    assert dead.sent[0][2]["saga_id"] == fresh.sent[0][2]["saga_id"] == "s1"

    monkeypatch.setattr(gateway_module, "get_actor", lambda name, namespace: dead)
    gw = RayGateway("ns")  # looked up here, not given: a dead actor fails the attempt
    with pytest.raises(gateway_module.ParticipantUnavailableError):
        asyncio.run(gw.call("p", request("s2"), 30))
