"""Participant idempotency against real stores (an SQLite file, a PostgreSQL schema),
without Ray."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import uuid

import pytest

from saga_actors import NonRetryableError, Participant, StepContext, action, compensation
from saga_actors.model.messages import StepRequest
from saga_actors.testing import Fault
from tests.fakes import until


class Counter(Participant):
    name = "counter"

    def setup(self, db):
        db.execute("CREATE TABLE IF NOT EXISTS total (id INTEGER PRIMARY KEY, n INTEGER)")
        db.execute("INSERT INTO total VALUES (1, 0) ON CONFLICT DO NOTHING")

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


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A participant's store: an SQLite file, or a PostgreSQL schema of the test's own
    (the same handlers' SQL runs on both)."""
    if request.param == "sqlite":
        yield tmp_path / "counter.sqlite"
        return
    yield f"{request.getfixturevalue('pg_database')}?schema=p_{uuid.uuid4().hex[:10]}"
    gc.collect()  # the test's participants close their server connections


@pytest.fixture
def sqlite_store(tmp_path):
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


def test_a_handler_bug_is_logged_at_warning_with_its_traceback_a_decline_at_info(
        sqlite_store):
    from loguru import logger

    lines: list = []
    sink = logger.add(lambda m: lines.append(m.record), level="DEBUG")
    try:
        p = Counter(store_path=sqlite_store)
        call(p, req(explode=True))  # a bug: RuntimeError
        call(p, req(saga="s2", declined=True))  # on purpose: NonRetryableError
    finally:
        logger.remove(sink)
    bug = [r for r in lines if "RuntimeError" in r["message"]]
    assert len(bug) == 1 and bug[0]["level"].name == "WARNING"
    assert bug[0]["exception"] is not None  # the traceback goes with it
    assert "after the write" in bug[0]["message"]
    declined = [r for r in lines if "declined" in r["message"]]
    assert len(declined) == 1 and declined[0]["level"].name == "INFO"
    assert declined[0]["exception"] is None


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
    assert not reply.ok and reply.error_type in ("IntegrityError", "UniqueViolation")
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
        await until(lambda: len(p.busy_keys()) >= 2, what="both requests running")
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
        await until(p.busy_keys, what="the call running")
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
        await until(p.busy_keys, what="the call running")
        return await p.fence("a", "add"), await action

    fenced, reply = asyncio.run(scenario())
    assert reply.ok and fenced == {"applied": True, "output": {"added": 5}}
    assert p.busy_keys() == []


# --- async and blocking handlers ----------------------------------------------------


class Outside:
    """A stand-in for an outside service (a payment provider): records the keys it saw."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.release = threading.Event()


class Slow(Participant):
    """Handlers that wait on the outside world: one async, one blocking, one inline."""

    name = "slow"
    outside = Outside()

    def setup(self, db):
        db.execute("CREATE TABLE IF NOT EXISTS sent (saga_id TEXT PRIMARY KEY, how TEXT)")

    @action
    async def notify(self, ctx: StepContext) -> dict:
        self.outside.keys.append(ctx.idempotency_key)
        await asyncio.sleep(ctx.data.get("wait", 0))  # an outside call
        ctx.db.execute("INSERT INTO sent VALUES (?, 'async')", (ctx.saga_id,))
        return {"notified": ctx.saga_id}

    @compensation("notify")
    async def unnotify(self, ctx: StepContext) -> dict:
        await asyncio.sleep(0)
        ctx.db.execute("DELETE FROM sent WHERE saga_id=?", (ctx.action_output["notified"],))
        return {}

    @action
    async def careless(self, ctx: StepContext) -> dict:
        ctx.db.execute("INSERT INTO sent VALUES (?, 'careless')", (ctx.saga_id,))
        await asyncio.sleep(0)  # awaits with the transaction open: refused
        return {}

    @action(blocking=True)
    def post(self, ctx: StepContext) -> dict:
        self.outside.keys.append(ctx.idempotency_key)
        self.outside.release.wait(ctx.data.get("wait", 0))  # a blocking client library
        ctx.db.execute("INSERT INTO sent VALUES (?, 'blocking')", (ctx.saga_id,))
        return {"posted": ctx.saga_id}

    @compensation("post", blocking=True)
    def unpost(self, ctx: StepContext) -> dict:
        ctx.db.execute("DELETE FROM sent WHERE saga_id=?", (ctx.action_output["posted"],))
        return {}

    @action
    def read(self, ctx: StepContext) -> dict:
        return {"rows": ctx.db.execute("SELECT COUNT(*) FROM sent").fetchone()[0]}

    def sent(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT saga_id, how FROM sent"))


def sreq(method, saga="s1", kind="action", step=None, attempt=1, **data):
    return StepRequest(saga_id=saga, saga_type="t", step=step or method, kind=kind,
                       method=method, attempt=attempt, data=data)


@pytest.fixture
def slow(store):
    Slow.outside = Outside()
    return Slow(store_path=store)


def test_handler_kinds_are_detected():
    assert Slow.handler_modes() == {"notify": "async", "unnotify": "async", "careless": "async",
                                    "post": "blocking", "unpost": "blocking", "read": "inline"}


def test_an_async_handler_awaits_outside_io_and_commits_with_its_key(slow):
    reply = call(slow, sreq("notify", wait=0.01))
    assert reply.ok and reply.output == {"notified": "s1"}
    assert Slow.outside.keys == ["s1/notify/action"]  # ctx.idempotency_key
    assert slow.sent() == {"s1": "async"} and slow.effect_counts() == {"notify": 1}
    again = call(slow, sreq("notify", attempt=2))
    assert again.replayed and Slow.outside.keys == ["s1/notify/action"]
    undo = call(slow, StepRequest(saga_id="s1", saga_type="t", step="notify",
                                  kind="compensation", method="unnotify", attempt=1))
    assert undo.ok and slow.sent() == {}


def test_an_async_handler_cancelled_at_its_timeout_keeps_no_effect(slow):
    async def scenario():
        task = asyncio.ensure_future(slow.handle_call(sreq("notify", wait=60)))
        await until(lambda: Slow.outside.keys, what="the outside call to begin")
        assert slow.cancel_calls(["s1/notify/action#1"]) == 1
        return await asyncio.wait_for(task, 5)

    reply = asyncio.run(scenario())
    assert not reply.ok and reply.error_type == "CallCancelled"
    assert slow.sent() == {} and slow.ledger() == []


def test_an_async_handler_that_awaits_after_writing_is_refused_and_undone(slow):
    reply = call(slow, sreq("careless"))
    assert not reply.ok and not reply.retryable
    assert reply.error_type == "HandlerAwaitedInTransaction"
    assert "await outside calls first, then write" in reply.error
    assert slow.sent() == {} and slow.ledger() == []
    assert call(slow, sreq("read", saga="s2")).ok  # the store is not left locked


def test_a_blocking_handler_does_not_freeze_its_participant_and_a_late_effect_is_refused(slow):
    async def scenario():
        task = asyncio.ensure_future(slow.handle_call(sreq("post", wait=30)))
        await until(lambda: Slow.outside.keys, what="the blocking call to begin")
        # meanwhile other sagas' calls are served, writes included
        served = await asyncio.wait_for(slow.handle_call(sreq("notify", saga="s2")), 2)
        read = await asyncio.wait_for(slow.handle_call(sreq("read", saga="s3")), 2)
        assert slow.cancel_calls(["s1/post/action#1"]) == 1  # its timeout
        cancelled = await task
        Slow.outside.release.set()  # the outside call returns late; the thread goes on
        return served, read, cancelled

    served, read, cancelled = asyncio.run(scenario())
    assert served.ok and read.ok and read.output == {"rows": 1}
    assert not cancelled.ok and cancelled.error_type == "CallCancelled"
    slow._engine._pool().shutdown(wait=True)  # the thread has finished: its effect was refused
    assert slow.sent() == {"s2": "async"}
    assert [e["method"] for e in slow.ledger()] == ["notify", "read"]  # no "post"
    # the saga sends the same key again: applied now, once
    Slow.outside.release.set()
    slow._engine._threads = None
    again = call(slow, sreq("post", attempt=2))
    assert again.ok and not again.replayed and slow.sent()["s1"] == "blocking"
    assert Slow.outside.keys == ["s1/post/action", "s2/notify/action", "s1/post/action"]


def test_an_async_or_blocking_handlers_db_cannot_escape_its_transaction(slow, store):
    from saga_actors.participant.handlers import EffectDB
    from saga_actors.participant.stores import open_store

    conn = open_store(store).connect()
    db = EffectDB(conn)
    for name in ("commit", "rollback", "executescript"):
        with pytest.raises(AttributeError, match="ends the effect's transaction itself"):
            getattr(db, name)
    db.cursor().execute("INSERT INTO sent VALUES ('x', 'cursor')")
    assert conn.in_transaction  # the cursor's write is inside the effect's transaction
    db.finish(keep=False)
    assert slow.sent() == {}


def test_a_blocking_compensation_undoes_its_action(slow):
    Slow.outside.release.set()
    assert call(slow, sreq("post")).ok
    undo = call(slow, StepRequest(saga_id="s1", saga_type="t", step="post",
                                  kind="compensation", method="unpost", attempt=1))
    assert undo.ok and slow.sent() == {}
    assert slow.effect_counts() == {"post": 1, "unpost": 1}


def test_a_late_blocking_action_after_its_compensation_is_refused(slow):
    """The compensation arrives (and tombstones the action) while the action's thread is
    still on its outside call: the action's effect is refused when it tries to commit."""
    async def scenario():
        action_task = asyncio.ensure_future(slow.handle_call(sreq("post", wait=30)))
        await until(lambda: Slow.outside.keys, what="the outside call to begin")
        undo = await slow.handle_call(StepRequest(
            saga_id="s1", saga_type="t", step="post", kind="compensation", method="unpost",
            attempt=1))
        Slow.outside.release.set()
        return undo, await action_task

    undo, late = asyncio.run(scenario())
    assert undo.ok and undo.output == {"noop": True}
    assert not late.ok and late.error_type == "ActionRefusedError"
    assert slow.sent() == {} and slow.ledger() == []


@pytest.mark.parametrize("clash", ["describe", "ledger", "fence", "handle", "call", "setup"])
def test_a_handler_may_not_shadow_the_participants_own_methods(clash):
    from saga_actors import SagaDefinitionError

    with pytest.raises(SagaDefinitionError, match=f"handler '{clash}' shadows"):
        type("Bad", (Participant,), {"name": "bad", clash: action(lambda self, ctx: {})})


def test_a_compensation_of_no_action_and_an_async_blocking_handler_are_refused():
    from saga_actors import SagaDefinitionError

    with pytest.raises(SagaDefinitionError, match="'undo' compensates 'nothing'"):
        type("Bad", (Participant,), {"undo": compensation("nothing")(lambda self, ctx: {})})

    async def both(self, ctx):
        return {}

    with pytest.raises(SagaDefinitionError, match="cannot also be blocking"):
        type("Bad", (Participant,), {"both": action(blocking=True)(both)})


def test_the_store_has_a_schema_version_and_a_newer_or_foreign_file_is_refused(sqlite_store,
                                                                              tmp_path):
    store = sqlite_store

    from saga_actors import ParticipantStoreError

    p = Counter(store_path=store)
    assert p.db.execute("PRAGMA user_version").fetchone()[0] == 1
    p.db.close()
    old = sqlite3.connect(store)
    old.execute("PRAGMA user_version=0")  # a store from before versions: still opens
    old.close()
    reopened = Counter(store_path=store)
    assert reopened.total() == 0
    reopened.db.close()  # closed now, not whenever the garbage collector gets to it

    def contents():
        db = sqlite3.connect(store)
        try:
            return db.execute("PRAGMA user_version").fetchone()[0], list(db.iterdump())
        finally:
            db.close()

    newer = sqlite3.connect(store)
    newer.execute("PRAGMA user_version=7")
    newer.close()
    before = contents()
    with pytest.raises(ParticipantStoreError, match="schema version 7 is newer"):
        Counter(store_path=store)
    assert contents() == before
    assert before[0] == 7
    foreign = tmp_path / "crm.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE customers (id TEXT)")
    db.close()
    with pytest.raises(ParticipantStoreError, match="not a saga_actors participant store"):
        Counter(store_path=foreign)


def test_ctx_input_is_the_saga_input_as_its_typed_model(store):
    from pydantic import BaseModel

    from saga_actors import Saga, Step

    class Order(BaseModel):
        by: int
        note: str = ""

    seen = []

    class Typed(Participant):
        name = "typed"

        @action
        def take(self, ctx: StepContext) -> dict:
            seen.append(ctx.input)
            return {}

    saga = Saga(name="typed_saga", input_model=Order,
                steps=[Step(name="take", participant="typed", kind="pivot")])
    p = Typed(store_path=store)
    request = StepRequest(saga_id="s1", saga_type="typed_saga", step="take", kind="action",
                          method="take", attempt=1, data={"by": 3, "earlier_output": "x"})
    unknown = call(p, request)
    assert not unknown.ok and "cannot find the definition of saga 'typed_saga' v1" in \
        unknown.error
    p.use_definitions(lambda name, version: saga if (name, version) == ("typed_saga", 1)
                      else None)
    assert call(p, request.model_copy(update={"saga_id": "s2"})).ok
    assert seen == [Order(by=3)]


@pytest.mark.parametrize("clash", ["_engine", "db", "store", "_recycler", "busy"])
def test_a_helper_or_attribute_may_not_shadow_the_machinery_either(clash):
    from saga_actors import SagaDefinitionError

    with pytest.raises(SagaDefinitionError, match=f"name '{clash}' shadows the participant"):
        type("Bad", (Participant,), {"name": "bad", clash: lambda self, *a: None})
    with pytest.raises(SagaDefinitionError, match=f"handler '{clash}' shadows"):
        type("Bad", (Participant,), {"name": "bad", clash: action(lambda self, ctx: {})})
    # the hooks a subclass is meant to set stay its own; and a helper of its own is fine
    type("Fine", (Participant,), {"name": "fine", "blocking_threads": 2,
                                  "setup": lambda self, db: None, "_my_write": lambda s: 1})


def test_a_subclass_s_own_private_helpers_are_its_own(sqlite_store):
    """The machinery lives in a private engine, not in the class users subclass: helpers
    named like its internals (``_write``, ``_insert``, ``_calls``) are simply the user's."""

    class Ledger(Counter):
        name = "ledger"
        _calls = "the user's own"

        def _write(self, ctx, by):
            ctx.db.execute("UPDATE total SET n = n + ?", (by,))

        def _insert(self):
            return "also the user's"

        @action
        def post(self, ctx: StepContext) -> dict:
            self._write(ctx, ctx.data["by"])
            return {"posted": ctx.data["by"]}

    p = Ledger(store_path=sqlite_store)
    reply = call(p, req(method="post"))
    assert reply.ok and p.total() == 5 and p._insert() == "also the user's"
    assert call(p, req(method="post")).replayed and p.total() == 5  # still exactly once


def test_the_reserved_names_cover_every_attribute_a_participant_instance_holds(tmp_path):
    from saga_actors.participant.base import _reserved_names

    instance = Participant(store=tmp_path / "p.sqlite", name="p")
    assert set(vars(instance)) <= _reserved_names()
