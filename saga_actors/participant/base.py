"""The participant base: a service with its own database, and idempotency built in.

A participant declares actions and compensations with :func:`action` and
:func:`compensation`. Each request carries the idempotency key
``<saga_id>/<step>/<action|compensation>``; the base class records the outcome in the
participant's own store (an SQLite file or a PostgreSQL schema,
:mod:`saga_actors.participant.stores`)
*in the same transaction* as the business effect, so a
participant that crashes and restarts neither loses an effect nor applies one twice:

- a repeated key returns the recorded outcome (``replayed=True``) without re-applying;
- a compensation whose action never applied records a tombstone for the action's key, so
  a late duplicate of that action is refused instead of applied.

No Ray here: :mod:`saga_actors.ray.actors` turns a subclass into a named Ray actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from loguru import logger

from saga_actors.errors import (
    ActionRefusedError,
    NonRetryableError,
    SagaDefinitionError,
    StepError,
    StoreUnavailableError,
)
from saga_actors.model.messages import (
    NotJSONError,
    StepReply,
    StepRequest,
    call_id,
    encode_json,
    idempotency_key,
)
from saga_actors.participant.faults import Fault
from saga_actors.participant.handlers import (
    EffectDB,
    StepContext,
    mode_of,
    run_async_handler,
)
from saga_actors.participant.stores import STORE_OUTAGE_WAIT_S, STORE_SCHEMA_VERSION, open_store

DefinitionLookup = Callable[[str, int], Any]  # (saga type, version) -> Saga | None

# an inline handler slower than this holds up every saga using its participant: say so
SLOW_INLINE_S = 0.5
# while its store's server is out of reach, a participant tries again after this pause,
# doubling up to the most (for STORE_OUTAGE_WAIT_S in all)
OUTAGE_FIRST_PAUSE_S = 0.1
OUTAGE_MAX_PAUSE_S = 2.0
# cancels of calls that never arrived (most were answered before their cancel came): the
# oldest are forgotten past this many
MAX_EARLY_CANCELS = 10_000
_KEYS_PER_QUERY = 500  # keys looked up in one query by a group commit

_EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS saga_effects (
    key TEXT PRIMARY KEY,
    saga_id TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL,          -- applied | tombstone | noop
    output TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
)
"""


class _Call:
    """A blocking handler's call, shared with its thread: the effect commits only if the
    call was not cancelled first (the lock makes "check, then commit" one step)."""

    __slots__ = ("cancelled", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled = False

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True


class Participant:
    """Base class of participant services. Subclasses set ``name`` and declare handlers
    (see :mod:`saga_actors.participant.handlers` for the three kinds: ``def``, ``async def`` and
    ``@action(blocking=True)``)."""

    name: ClassVar[str] = ""
    blocking_threads: ClassVar[int] = 8
    """Threads for blocking handlers (each participant has its own pool; calls beyond it
    queue, and a call cancelled while queued never runs)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A handler may not shadow a method the runtime calls, and a compensation must
        undo an action of the class, and a handler is async or blocking, not both."""
        super().__init_subclass__(**kwargs)
        reserved = _reserved_names()
        for attr, value in vars(cls).items():
            handler = getattr(value, "__saga_role__", None) is not None
            # a helper too, private ones included: the machinery is never shadowed; and a
            # handler is not one of the hooks a subclass overrides either
            if attr in reserved or (handler and attr in OVERRIDABLE):
                what = "handler" if handler else "name"
                raise SagaDefinitionError(cls.__name__, f"{what} {attr!r} shadows the "
                                          f"participant's own {attr!r}; rename it")
        own = {attr: fn for attr, fn in vars(cls).items() if getattr(fn, "__saga_role__", None)}
        if not own:
            return
        handlers = cls.handlers()
        for attr, fn in own.items():
            role, of = fn.__saga_role__
            if role == "compensation" and handlers.get(of, ("",))[0] != "action":
                raise SagaDefinitionError(cls.__name__, f"{attr!r} compensates {of!r}, "
                                          "which is not an action of this participant")
            if getattr(fn, "__saga_blocking__", False) and mode_of(fn) == "async":
                raise SagaDefinitionError(cls.__name__, f"{attr!r} is async def: it cannot "
                                          "also be blocking=True")

    def __init__(
        self, *, store_path: str | Path | None = None, store: str | Path | None = None,
        name: str | None = None, faults: dict | None = None,
    ) -> None:
        """``store`` (or its older name ``store_path``): an SQLite file, or a PostgreSQL
        schema ``postgresql://user@host:port/db?schema=NAME`` (default schema: the
        participant's name). See :mod:`saga_actors.participant.stores`."""
        self.participant_name = name or type(self).name or type(self).__name__.lower()
        location = store if store is not None else store_path
        if location is None:
            raise TypeError(f"{type(self).__name__}: give store= (a file or a URL)")
        self.store = open_store(location, default_schema=self.participant_name)
        self.store_path = self.store.location
        self.db = self.store.connect()
        self.db.begin()
        try:
            self.store.prepare(self.db)
            self.store.check(self.db)
            self.db.execute(_EFFECTS_SCHEMA)
            self.store.set_version(self.db, STORE_SCHEMA_VERSION)
            self.setup(self.db)
        except BaseException:
            self.db.end(keep=False)
            self.db.close()
            raise
        self.db.end(keep=True)
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}  # per key: calls holding or waiting for it
        self._calls: dict[str, asyncio.Task] = {}  # requests running, by call id
        self._cancelled_early: dict[str, bool] = {}  # cancelled before they arrived
        self._batch: list[tuple[StepRequest, Callable[[StepContext], Any], asyncio.Future]] = []
        self._faults: dict[str, Fault] = {}
        self._fault_calls: dict[str, int] = {}
        self._threads: ThreadPoolExecutor | None = None  # for blocking handlers
        self._thread_db = threading.local()
        self._running = 0
        self._running_lock = threading.Lock()
        self._slow_said: set[str] = set()
        self._definitions: DefinitionLookup | None = None  # for ctx.input
        self.set_faults(faults or {})

    # --- for subclasses -------------------------------------------------------------

    def setup(self, db: Any) -> None:
        """Create the business tables (runs inside a transaction, on every start). Write
        SQL that runs on SQLite and PostgreSQL alike (see :mod:`saga_actors.participant.stores`)."""

    @classmethod
    def handlers(cls) -> dict[str, tuple[str, str | None]]:
        """Method name -> (role, action it compensates)."""
        cached = cls.__dict__.get("_handlers_cache")
        if cached is None:
            cached = {}
            for klass in reversed(cls.__mro__):
                for attr, fn in vars(klass).items():
                    role = getattr(fn, "__saga_role__", None)
                    if role:
                        cached[attr] = role
            cls._handlers_cache = cached
        return cached

    @classmethod
    def handler_modes(cls) -> dict[str, str]:
        """Handler name -> ``inline``, ``async`` or ``blocking``."""
        return {name: mode_of(getattr(cls, name)) for name in cls.handlers()}

    # --- what the runtime calls -----------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Name, actions and compensations (compensation -> the action it undoes)."""
        handlers = self.handlers()
        return {
            "name": self.participant_name,
            "actions": sorted(m for m, (r, _) in handlers.items() if r == "action"),
            "compensations": {m: of for m, (r, of) in handlers.items() if r == "compensation"},
        }

    def use_definitions(self, lookup: DefinitionLookup) -> None:
        """Where ``ctx.input`` finds a saga's definition (the actor shell gives the
        cluster's catalog)."""
        self._definitions = lookup

    def set_faults(self, faults: dict[str, Fault | dict]) -> None:
        """Replace the injected faults (method name -> :class:`Fault`)."""
        unknown = set(faults) - set(self.handlers())
        if unknown:
            raise ValueError(f"{self.participant_name}: no handler named {sorted(unknown)}")
        self._faults = {m: f if isinstance(f, Fault) else Fault(**f) for m, f in faults.items()}
        self._fault_calls = {}

    async def handle(self, request: StepRequest | dict) -> StepReply:
        """Apply one action or compensation exactly once per idempotency key."""
        req = request if isinstance(request, StepRequest) else StepRequest(**request)
        role = self.handlers().get(req.method)
        if role is None or role[0] != req.kind:
            return StepReply(
                ok=False,
                error_type="UnknownMethod",
                error=f"{self.participant_name} has no {req.kind} {req.method!r}",
                retryable=False,
            )
        with logger.contextualize(
            saga_id=req.saga_id, step=req.step, attempt=req.attempt, kind=req.kind
        ):
            async with self._key_lock(req.key):
                if req.method in self._faults:  # a replay is never delayed nor failed
                    recorded = self._recorded(self.db, req.key)
                    if recorded is not None:
                        return recorded
                    try:
                        await self._inject(req.method)
                    except StepError as exc:
                        return self._failure(exc)
                return await self._apply_waiting_out_outages(req, getattr(self, req.method))

    async def _apply_waiting_out_outages(self, req: StepRequest,
                                         handler: Callable[[StepContext], Any]) -> StepReply:
        """Apply; while the store's server is out of reach (a restart, dropped
        connections), wait and try again, up to STORE_OUTAGE_WAIT_S: an outage of the
        store is not the step's failure. Trying again is safe: the key's record says
        whether a commit whose answer was lost went through."""
        mode = mode_of(handler)
        deadline = time.monotonic() + STORE_OUTAGE_WAIT_S
        pause = OUTAGE_FIRST_PAUSE_S
        while True:
            try:
                if mode == "inline":
                    reply = await self._apply(req, handler)
                else:
                    reply = await self._apply_outside(req, handler, mode)
            except StoreUnavailableError as exc:
                reply = _failed(exc)
            if reply.error_type != StoreUnavailableError.__name__:
                return reply
            if time.monotonic() + pause > deadline:
                return reply
            logger.warning("{}: store out of reach ({}); {} waits and tries again",
                           self.participant_name, reply.error, req.key)
            await asyncio.sleep(pause)
            pause = min(pause * 2, OUTAGE_MAX_PAUSE_S)

    async def handle_call(self, request: StepRequest | dict) -> StepReply:
        """:meth:`handle` as a call :meth:`cancel_calls` can stop by its call id; refused
        if its cancel arrived first. (Ray's own cancel of an async actor task can be lost
        when it lands as the task starts, ray-project/ray#52628: measured here, 2 of 4,900
        calls with 2-10 ms timeouts kept running.)"""
        cid = _call_id(request)
        if self._cancelled_early.pop(cid, None):
            return _call_cancelled(cid)
        task = asyncio.ensure_future(self.handle(request))
        self._calls[cid] = task
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # the whole call was cancelled, not just this request
            return _call_cancelled(cid)
        finally:
            if self._calls.get(cid) is task:
                del self._calls[cid]

    async def handle_many(self, requests: list[StepRequest | dict]) -> list[StepReply]:
        """Several requests in one call (a host's batch), one reply each; each can be
        stopped alone with :meth:`cancel_calls`."""
        outcomes = await asyncio.gather(*(self.handle_call(r) for r in requests),
                                        return_exceptions=True)
        # a malformed request gets its own failed reply, not the batch's
        return [o if isinstance(o, StepReply) else _failed(o) for o in outcomes]

    def cancel_calls(self, call_ids: list[str]) -> int:
        """Stop calls by :attr:`StepRequest.call_id` (a timeout or a saga's cancel). One
        that has not arrived yet is refused when it does. Returns how many were running."""
        running = 0
        for cid in call_ids:
            task = self._calls.get(cid)
            if task is None:
                self._cancelled_early[cid] = True
                while len(self._cancelled_early) > MAX_EARLY_CANCELS:
                    del self._cancelled_early[next(iter(self._cancelled_early))]
            elif not task.done():
                task.cancel()
                running += 1
        return running

    async def fence(self, saga_id: str, step: str) -> dict[str, Any]:
        """Settle an action whose outcome its saga could not learn (a pivot that timed out,
        was cancelled mid-call or lost its reply): ``{"applied": True, "output": ...}`` if
        it applied; otherwise a tombstone is recorded, so that it never will, and
        ``{"applied": False}``. Waits for a call of that action still running here."""
        key = idempotency_key(saga_id, step, "action")
        async with self._key_lock(key):
            row = self._action_row(self.db, saga_id, step)
            if row is not None:
                applied = row[0] == "applied"
                return {"applied": applied, "output": json.loads(row[1]) if applied else None}
            self.db.begin()
            try:
                self._write(self.db, key, saga_id, step, "action", "fence", "tombstone", "{}")
                self.db.end(keep=True)
            except self.store.errors:
                self.db.end(keep=False)
                raise
            logger.info("{}: fenced {} (it never applied; it never will)",
                        self.participant_name, key)
            return {"applied": False, "output": None}

    @contextlib.asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of one idempotency key (everything done for a key is serialized);
        it is dropped once nobody waits for it, so busy_keys shows only keys in use."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] = self._lock_users.get(key, 0) + 1  # holding or waiting
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if not self._lock_users[key]:
                del self._lock_users[key]
                self._locks.pop(key, None)

    def busy_keys(self) -> list[str]:
        """Idempotency keys being applied right now (empty once cancelled calls are gone)."""
        return sorted(self._locks)

    def ledger(self, saga_id: str | None = None) -> list[dict[str, Any]]:
        """Applied effects (not tombstones), oldest first: what tests and scripts audit."""
        sql = "SELECT key, saga_id, step, kind, method, output, at FROM saga_effects"
        sql += " WHERE status='applied'" + (" AND saga_id=?" if saga_id else "") + " ORDER BY at"
        rows = self.db.execute(sql, (saga_id,) if saga_id else ()).fetchall()
        cols = ("key", "saga_id", "step", "kind", "method", "output", "at")
        return [{**dict(zip(cols, r, strict=True)), "output": json.loads(r[5])} for r in rows]

    def effect_counts(self) -> dict[str, int]:
        """Applied effects by method name."""
        rows = self.db.execute(
            "SELECT method, COUNT(*) FROM saga_effects WHERE status='applied' GROUP BY method"
        ).fetchall()
        return dict(rows)

    # --- internals ------------------------------------------------------------------

    def _recorded(self, db: Any, key: str) -> StepReply | None:
        row = db.execute(
            "SELECT kind, status, output FROM saga_effects WHERE key=?", (key,)
        ).fetchone()
        return _reply_of(key, row)

    async def _inject(self, method: str) -> None:
        fault = self._faults.get(method)
        if fault is None:
            return
        n = self._fault_calls[method] = self._fault_calls.get(method, 0) + 1
        if fault.times is not None and n > fault.times:
            return
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.fail:
            message = f"injected failure in {self.participant_name}.{method}"
            raise StepError(message) if fault.retryable else NonRetryableError(message)

    def _apply(self, req: StepRequest, handler: Callable[[StepContext], Any]) -> asyncio.Future:
        """Queue one effect for the next group commit; the future gets its reply once the
        transaction holding it is committed (durable), never before."""
        future = asyncio.get_running_loop().create_future()
        self._batch.append((req, handler, future))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._commit_batch)
        return future

    def _commit_batch(self) -> None:
        """Every effect queued in this loop turn: one transaction, one fsync. What the
        store already holds for the batch's keys is read in one query; each new effect
        has its own savepoint, so a failing handler rolls back only itself."""
        batch, self._batch = self._batch, []
        db = self.db
        replies: list[StepReply] = []
        try:
            db.begin()
            rows = self._rows_for(db, [req for req, _, _ in batch])
            for req, handler, _ in batch:
                recorded = _reply_of(req.key, rows.get(req.key))
                if recorded is not None:  # a repeated key (or another process got here first)
                    replies.append(recorded)
                    continue
                db.execute("SAVEPOINT effect")
                with logger.contextualize(saga_id=req.saga_id, step=req.step,
                                          attempt=req.attempt, kind=req.kind):
                    reply, keep = self._apply_one(req, handler, rows)
                if not keep:  # a kept savepoint needs no RELEASE: COMMIT ends them all
                    db.execute("ROLLBACK TO effect")
                replies.append(reply)
            db.end(keep=True)
        except self.store.errors as exc:  # the store itself failed: nothing applied
            with contextlib.suppress(*self.store.errors):
                db.end(keep=False)
            replies = [self._failure(exc)] * len(batch)
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    def _rows_for(self, db: Any, reqs: list[StepRequest]) -> dict[str, tuple[str, str, str]]:
        """key -> (kind, status, output JSON) recorded for the requests' keys and, for
        compensations, their actions' keys."""
        keys = sorted({k for r in reqs for k in (
            (r.key, idempotency_key(r.saga_id, r.step, "action")) if r.kind == "compensation"
            else (r.key,))})
        rows: dict[str, tuple[str, str, str]] = {}
        for i in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[i:i + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            for key, kind, status, output in db.execute(
                    f"SELECT key, kind, status, output FROM saga_effects WHERE key IN ({marks})",
                    chunk):
                rows[key] = (kind, status, output)
        return rows

    def _apply_one(
        self, req: StepRequest, handler: Callable[[StepContext], Any],
        rows: dict[str, tuple[str, str, str]],
    ) -> tuple[StepReply, bool]:
        """Apply one new effect inside the open transaction; (reply, whether to keep it).
        ``rows`` (what the store holds for the batch's keys) is kept up to date."""
        db = self.db
        try:
            status = "applied"
            written: dict[str, tuple[str, str, str]] = {}
            applied = None
            if req.kind == "compensation":
                action_key = idempotency_key(req.saga_id, req.step, "action")
                row = rows.get(action_key)
                applied = json.loads(row[2]) if row is not None and row[1] == "applied" else None
            if req.kind == "compensation" and applied is None:
                # Nothing to undo: tombstone the action so a late duplicate is refused.
                self._insert(db, action_key, req, "action", "tombstone", {})
                written[action_key] = ("action", "tombstone", "{}")
                status, output = "noop", {"noop": True}
            else:
                # An action whose reply the saga never journaled (a timeout, a crash, a
                # deadline mid-call) is undone with the output this store recorded for it.
                action_output = req.action_output if req.action_output is not None else applied
                began = time.monotonic()
                output = _checked(req, handler(self._context(req, action_output, db)))
                self._say_if_slow(req.method, time.monotonic() - began)
            written[req.key] = (req.kind, status, self._insert(db, req.key, req, req.kind,
                                                               status, output))
        except Exception as exc:  # business failure (its SQL too): roll back this effect only
            self._say_failed(req, exc)
            return self._failure(exc), False
        rows.update(written)
        return _applied(output), True

    # --- async and blocking handlers: outside the group commit ------------------------

    async def _apply_outside(self, req: StepRequest, handler: Callable[[StepContext], Any],
                             mode: str) -> StepReply:
        """Run an async or a blocking handler in a transaction of its own, begun at its
        first ``ctx.db`` statement and committed with the idempotency record."""
        recorded = self._recorded(self.db, req.key)
        if recorded is not None:
            return recorded
        action_output = req.action_output
        if req.kind == "compensation":
            applied = self._applied_action_output(self.db, req)
            if applied is None:  # nothing to undo: tombstoned in the group commit
                return await self._apply(req, handler)
            action_output = action_output if action_output is not None else applied
        if mode == "async":
            db = EffectDB(self.db)
            try:
                output = await run_async_handler(
                    handler, self._context(req, action_output, db), db)
            except BaseException as exc:  # its timeout (a cancel) included: nothing kept
                db.finish(keep=False)
                if not isinstance(exc, Exception):
                    raise
                self._say_failed(req, exc)
                return self._failure(exc)
            return self._finish(db, req, output, None)  # same loop turn: nothing interleaves
        call = _Call()
        run = contextvars.copy_context().run  # the thread logs with the saga's ids
        future = asyncio.get_running_loop().run_in_executor(
            self._pool(), run, self._blocking_effect, req, handler, action_output, call)
        try:
            return await future
        except asyncio.CancelledError:
            call.cancel()  # its thread may run on; its effect will not be kept
            raise

    def _blocking_effect(self, req: StepRequest, handler: Callable[[StepContext], Any],
                         action_output: dict[str, Any] | None, call: _Call) -> StepReply:
        """In a pool thread, with the thread's own connection."""
        with self._running_lock:
            self._running += 1
        try:
            db = EffectDB(self._thread_connection())
            try:
                output = handler(self._context(req, action_output, db))
            except Exception as exc:
                db.finish(keep=False)
                self._say_failed(req, exc)
                return self._failure(exc)
            return self._finish(db, req, output, call)
        finally:
            with self._running_lock:
                self._running -= 1

    def blocking_running(self) -> int:
        """Blocking handlers running in threads now (cancelled ones included, until their
        outside call returns and their effect is refused)."""
        return self._running

    def _finish(self, db: EffectDB, req: StepRequest, output: Any, call: _Call | None
                ) -> StepReply:
        """Record the effect with the handler's writes, in one transaction; a call that was
        cancelled first, or an action tombstoned meanwhile, keeps nothing."""
        try:
            output = _checked(req, output)
            db.begin()
            recorded = self._recorded(db, req.key)  # a compensation may have tombstoned it
            if recorded is not None:
                db.finish(keep=False)
                return recorded
            self._insert(db, req.key, req, req.kind, "applied", output)
            if call is None:
                db.finish(keep=True)
            else:
                with call.lock:
                    if call.cancelled:
                        db.finish(keep=False)
                        logger.info("{}: {} was cancelled before it committed; its effect "
                                    "is refused", self.participant_name, req.call_id)
                        return _call_cancelled(req.call_id)
                    db.finish(keep=True)
        except Exception as exc:
            db.finish(keep=False)
            self._say_failed(req, exc)
            return self._failure(exc)
        return _applied(output)

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=type(self).blocking_threads,
                                               thread_name_prefix=f"{self.participant_name}-")
        return self._threads

    def _thread_connection(self) -> Any:
        conn = getattr(self._thread_db, "conn", None)
        if conn is None:
            conn = self._thread_db.conn = self.store.connect()
        return conn

    def _context(self, req: StepRequest, action_output: dict[str, Any] | None,
                 db: Any) -> StepContext:
        return StepContext(req.saga_id, req.step, req.kind, req.attempt, req.data,
                           action_output, db, idempotency_key=req.key,
                           load_input=lambda: self._typed_input(req))

    def _typed_input(self, req: StepRequest) -> Any:
        """``ctx.input``: the input fields of ``req.data`` as the saga's input model."""
        saga = self._definitions(req.saga_type, req.version) if self._definitions else None
        if saga is None:
            raise NonRetryableError(
                f"ctx.input: {self.participant_name} cannot find the definition of saga "
                f"{req.saga_type!r} v{req.version} (ctx.data has the input as a dict)")
        model = saga.input_model
        return model.model_validate({k: v for k, v in req.data.items()
                                     if k in model.model_fields})

    def _say_failed(self, req: StepRequest, exc: Exception) -> None:
        """A handler's failure in the log: a :class:`StepError` it raised on purpose at
        INFO; anything else (a bug, most likely) at WARNING with its traceback."""
        if isinstance(exc, StepError):
            logger.info("{}.{} failed: {}", self.participant_name, req.method, exc)
            return
        logger.opt(exception=exc).warning(
            "{}.{} raised {} (retried as its step's policy says): {}", self.participant_name,
            req.method, type(exc).__name__, exc)

    def _failure(self, exc: Exception) -> StepReply:
        """A failed reply; a store server out of reach says so by its type."""
        if self.store.unavailable(exc) and not isinstance(exc, StoreUnavailableError):
            exc = StoreUnavailableError(self.store_path, str(exc).strip().split("\n")[0])
        return _failed(exc)

    def _say_if_slow(self, method: str, seconds: float) -> None:
        if seconds > SLOW_INLINE_S and method not in self._slow_said:
            self._slow_said.add(method)
            logger.warning("{}.{} took {:.1f}s on the participant's event loop, holding up "
                           "every saga that uses it: make it `async def`, or "
                           "@action(blocking=True) if it calls a blocking library",
                           self.participant_name, method, seconds)

    def _applied_action_output(self, db: Any, req: StepRequest) -> dict[str, Any] | None:
        """The recorded output of the action ``req`` compensates; None if it never applied."""
        row = self._action_row(db, req.saga_id, req.step)
        return json.loads(row[1]) if row is not None and row[0] == "applied" else None

    def _action_row(self, db: Any, saga_id: str, step: str) -> tuple[str, str] | None:
        """(status, output JSON) recorded for the action of ``step``, if any."""
        key = idempotency_key(saga_id, step, "action")
        return db.execute("SELECT status, output FROM saga_effects WHERE key=?",
                          (key,)).fetchone()

    def _insert(self, db: Any, key: str, req: StepRequest, kind: str, status: str,
                output: dict) -> str:
        """Record an effect; returns its output as JSON."""
        try:
            encoded = encode_json(output)
        except NotJSONError as exc:  # raised before the effect is kept
            raise NonRetryableError(f"{req.method} returned output that is {exc}; its effect "
                                    "was not applied") from None
        self._write(db, key, req.saga_id, req.step, kind, req.method, status, encoded)
        return encoded

    def _write(self, db: Any, key: str, saga_id: str, step: str, kind: str, method: str,
               status: str, encoded: str) -> None:
        db.execute("INSERT INTO saga_effects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, saga_id, step, kind, method, status, encoded, time.time()))


# what a subclass is meant to set or override
OVERRIDABLE = frozenset({"name", "blocking_threads", "setup"})
# attributes every participant instance holds (a test checks this against a real one), and
# what the Ray actor shell adds
INSTANCE_ATTRIBUTES = frozenset({
    "participant_name", "store", "store_path", "db", "_locks", "_lock_users", "_calls",
    "_cancelled_early", "_batch", "_faults", "_fault_calls", "_threads", "_thread_db", "_running",
    "_running_lock", "_slow_said", "_definitions"})
SHELL_ATTRIBUTES = frozenset({"call", "call_many", "_recycler"})


@functools.cache
def _reserved_names() -> frozenset[str]:
    """What a subclass may not define (a handler, a helper, an attribute): the base class's
    own methods and attributes, its instances', and the actor shell's; any of them would
    silently replace the machinery. Dunders and :data:`OVERRIDABLE` are the subclass's."""
    own = {n for n in dir(Participant) if not (n.startswith("__") and n.endswith("__"))}
    return frozenset((own | INSTANCE_ATTRIBUTES | SHELL_ATTRIBUTES) - OVERRIDABLE)


def _checked(req: StepRequest, output: Any) -> dict[str, Any]:
    if output is None:
        return {}
    if not isinstance(output, dict):
        raise TypeError(f"{req.method} returned {type(output).__name__}, not a dict")
    return output


def _reply_of(key: str, row: tuple[str, str, str] | None) -> StepReply | None:
    """The recorded outcome of ``key`` as a reply (a tombstone refuses); None if none."""
    if row is None:
        return None
    _, status, output = row
    if status == "tombstone":
        err = ActionRefusedError(f"{key}: compensated before it applied; refused")
        return StepReply(ok=False, error_type=type(err).__name__, error=str(err),
                         retryable=False)
    return StepReply.model_construct(ok=True, output=json.loads(output), error_type=None,
                                      error=None, retryable=True, replayed=True)


def _applied(output: dict[str, Any]) -> StepReply:
    return StepReply.model_construct(ok=True, output=output, error_type=None, error=None,
                                     retryable=True, replayed=False)


def _call_id(request: StepRequest | dict) -> str:
    if isinstance(request, StepRequest):
        return request.call_id
    try:
        return call_id(request["saga_id"], request["step"], request["kind"], request["attempt"])
    except (KeyError, TypeError):
        return f"malformed-{id(request)}"


def _call_cancelled(call_id: str) -> StepReply:
    return StepReply(ok=False, error_type="CallCancelled", error=f"{call_id} was cancelled",
                     retryable=True)


def _failed(exc: Exception) -> StepReply:
    """An exception as a reply: its type name and message cross Ray, never the object."""
    retryable = exc.retryable if isinstance(exc, StepError) else True
    return StepReply(ok=False, error_type=type(exc).__name__, error=str(exc), retryable=retryable)
