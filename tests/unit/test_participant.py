"""Participant idempotency against a real SQLite store, without Ray."""

from __future__ import annotations

import asyncio
import threading

import pytest

from saga_actors import Fault, NonRetryableError, Participant, StepContext, action, compensation
from saga_actors.messages import StepRequest


class Counter(Participant):
    name = "counter"

    def setup(self, db):
        db.execute("CREATE TABLE IF NOT EXISTS total (id INTEGER PRIMARY KEY, n INTEGER)")
        db.execute("INSERT OR IGNORE INTO total VALUES (1, 0)")

    @action
    def add(self, ctx: StepContext) -> dict:
        ctx.db.execute("UPDATE total SET n = n + ?", (ctx.data["by"],))
        if ctx.data.get("explode"):
            raise RuntimeError("after the write")  # the write must roll back
        if ctx.data.get("unpicklable"):
            raise Unpicklable()
        if ctx.data.get("declined"):
            raise NonRetryableError("declined")
        return {"added": ctx.data["by"]}

    @compensation("add")
    def subtract(self, ctx: StepContext) -> dict:
        ctx.db.execute("UPDATE total SET n = n - ?", (ctx.action_output["added"],))
        return {}

    def total(self) -> int:
        return self.db.execute("SELECT n FROM total").fetchone()[0]


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def req(kind="action", method="add", saga="s1", attempt=1, **data):
    return StepRequest(saga_id=saga, saga_type="t", step="add", kind=kind, method=method,
                       attempt=attempt, data={"by": 5, **data},
                       action_output={"added": 5} if kind == "compensation" else None)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "counter.sqlite"


def call(p, r):
    return asyncio.run(p.handle(r))


def test_a_repeated_key_returns_the_recorded_outcome_without_reapplying(store):
    p = Counter(store_path=store)
    first = call(p, req())
    again = call(p, req(attempt=2))
    assert first.ok and not first.replayed
    assert again.ok and again.replayed and again.output == first.output
    assert p.total() == 5
    assert p.effect_counts() == {"add": 1}


def test_concurrent_duplicates_apply_once(store):
    p = Counter(store_path=store, faults={"add": Fault(delay_s=0.05)})

    async def both():
        return await asyncio.gather(p.handle(req()), p.handle(req()))

    a, b = asyncio.run(both())
    assert a.ok and b.ok and sorted([a.replayed, b.replayed]) == [False, True]
    assert p.total() == 5


def test_a_restarted_participant_remembers_what_it_applied(store):
    call(Counter(store_path=store), req())
    reborn = Counter(store_path=store)  # same file, as after a crash and restart
    assert call(reborn, req()).replayed
    assert reborn.total() == 5 and len(reborn.ledger("s1")) == 1


def test_compensation_before_action_tombstones_the_action(store):
    p = Counter(store_path=store)
    comp = call(p, req("compensation", "subtract"))
    assert comp.ok and comp.output == {"noop": True}
    late = call(p, req())
    assert not late.ok and late.error_type == "ActionRefusedError" and not late.retryable
    assert p.total() == 0 and p.ledger() == []


def test_compensation_after_action_undoes_once(store):
    p = Counter(store_path=store)
    call(p, req())
    assert call(p, req("compensation", "subtract")).ok
    assert call(p, req("compensation", "subtract")).replayed
    assert p.total() == 0
    assert [e["method"] for e in p.ledger()] == ["add", "subtract"]


def test_an_action_whose_reply_was_never_journaled_is_undone_with_its_recorded_output(store):
    """Chaos found it: a deadline stopped the saga mid-call after the participant applied
    the action; the saga had no output to send with the compensation, whose handler then
    failed on None until the saga was STUCK."""
    p = Counter(store_path=store)
    call(p, req(by=7))
    unknown = req("compensation", "subtract").model_copy(update={"action_output": None})
    reply = call(p, unknown)
    assert reply.ok and not reply.replayed
    assert p.total() == 0  # the 7 the store recorded was taken back, not a guess


def test_a_failing_handler_rolls_back_its_effect_and_is_retryable(store):
    p = Counter(store_path=store)
    reply = call(p, req(explode=True))
    assert not reply.ok and reply.retryable and reply.error_type == "RuntimeError"
    assert p.total() == 0 and p.ledger() == []
    assert call(p, req()).ok and p.total() == 5  # nothing recorded: the retry applies


def test_concurrent_effects_share_a_commit_and_a_failing_one_rolls_back_alone(store):
    p = Counter(store_path=store)

    async def many():
        return await asyncio.gather(*(p.handle(req(saga=f"s{i}", explode=(i == 3)))
                                      for i in range(8)))

    replies = asyncio.run(many())
    assert [r.ok for r in replies] == [i != 3 for i in range(8)]
    assert p.total() == 35 and len(p.ledger()) == 7


def test_a_handlers_own_sql_error_fails_only_that_effect(store):
    p = Counter(store_path=store)

    class Dup(Counter):
        @action
        def add(self, ctx):
            ctx.db.execute("INSERT INTO total VALUES (1, 0)")  # primary key clash
            return {}

    dup = Dup(store_path=store)
    reply = call(dup, req())
    assert not reply.ok and reply.error_type == "IntegrityError"
    assert call(p, req(saga="other")).ok and p.total() == 5


def test_non_retryable_and_unpicklable_errors_become_plain_replies(store):
    p = Counter(store_path=store)
    declined = call(p, req(declined=True))
    assert (declined.ok, declined.retryable, declined.error) == (False, False, "declined")
    weird = call(p, req(unpicklable=True))
    assert weird.error_type == "Unpicklable" and weird.error == "holds a lock"
    assert p.total() == 0


def test_unknown_method_or_wrong_kind_is_refused(store):
    p = Counter(store_path=store)
    assert call(p, req(method="nope")).error_type == "UnknownMethod"
    assert call(p, req("compensation", "add")).error_type == "UnknownMethod"
    assert p.describe() == {"name": "counter", "actions": ["add"],
                            "compensations": {"subtract": "add"}}


def test_injected_faults_fail_then_clear(store):
    p = Counter(store_path=store, faults={"add": {"fail": True, "retryable": True, "times": 1}})
    assert not call(p, req()).ok
    assert call(p, req()).ok
    with pytest.raises(ValueError, match="no handler named"):
        p.set_faults({"nope": Fault(fail=True)})


def test_a_batch_gets_one_reply_per_request_in_order(store):
    p = Counter(store_path=store)
    replies = asyncio.run(p.handle_many([
        req(saga="a").model_dump(),
        req(saga="b", declined=True).model_dump(),
        {"saga_id": "c", "not": "a request"},  # malformed: its own failure only
        req(saga="d", by=2).model_dump(),
    ]))
    assert [r.ok for r in replies] == [True, False, False, True]
    assert replies[1].error_type == "NonRetryableError" and not replies[1].retryable
    assert replies[2].error_type == "ValidationError"
    assert replies[3].output == {"added": 2}
    assert p.total() == 7
    assert p.busy_keys() == []


def test_cancelling_one_request_of_a_batch_leaves_the_others_running(store):
    p = Counter(store_path=store, faults={"add": Fault(delay_s=0.2)})

    async def scenario():
        batch = asyncio.ensure_future(p.handle_many([req(saga="a"), req(saga="b")]))
        while len(p.busy_keys()) < 2:
            await asyncio.sleep(0.001)
        assert p.cancel_calls([req(saga="a").call_id]) == 1
        return await batch

    a, b = asyncio.run(scenario())
    assert not a.ok and a.error_type == "CallCancelled" and a.retryable
    assert b.ok and not b.replayed
    assert p.total() == 5 and [e["saga_id"] for e in p.ledger()] == ["b"]
    assert p.busy_keys() == []


def test_a_request_cancelled_before_it_arrives_is_refused_once(store):
    p = Counter(store_path=store)
    assert p.cancel_calls([req(saga="a", attempt=1).call_id]) == 0
    first = asyncio.run(p.handle_many([req(saga="a", attempt=1)]))[0]
    assert not first.ok and first.error_type == "CallCancelled"
    assert p.total() == 0
    # the next attempt of the same effect is a different call: it applies
    retry = asyncio.run(p.handle_many([req(saga="a", attempt=2)]))[0]
    assert retry.ok and p.total() == 5


def test_a_lone_call_can_be_stopped_by_its_call_id_too(store):
    # Ray's own cancel of an async actor task can be lost as the task starts
    # (ray-project/ray#52628); the gateway also names the call to cancel_calls
    p = Counter(store_path=store, faults={"add": Fault(delay_s=5)})

    async def scenario():
        call = asyncio.ensure_future(p.handle_call(req(saga="a").model_dump()))
        while not p.busy_keys():
            await asyncio.sleep(0.001)
        assert p.cancel_calls([req(saga="a").call_id]) == 1
        return await call

    reply = asyncio.run(scenario())
    assert not reply.ok and reply.error_type == "CallCancelled"
    assert p.total() == 0 and p.busy_keys() == []


def test_a_fence_reports_an_applied_action_with_its_output(store):
    p = Counter(store_path=store)
    call(p, req(saga="a"))
    assert asyncio.run(p.fence("a", "add")) == {"applied": True, "output": {"added": 5}}
    assert p.total() == 5


def test_a_fence_before_the_action_tombstones_it_for_good(store):
    p = Counter(store_path=store)
    assert asyncio.run(p.fence("a", "add")) == {"applied": False, "output": None}
    late = call(p, req(saga="a", attempt=2))
    assert not late.ok and late.error_type == "ActionRefusedError"
    assert p.total() == 0 and p.ledger() == []
    assert asyncio.run(p.fence("a", "add")) == {"applied": False, "output": None}


def test_a_fence_waits_for_the_action_still_running(store):
    p = Counter(store_path=store, faults={"add": Fault(delay_s=0.1)})

    async def scenario():
        action = asyncio.ensure_future(p.handle(req(saga="a")))
        while not p.busy_keys():
            await asyncio.sleep(0.001)
        return await p.fence("a", "add"), await action

    fenced, reply = asyncio.run(scenario())
    assert reply.ok and fenced == {"applied": True, "output": {"added": 5}}
    assert p.busy_keys() == []
