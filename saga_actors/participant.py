"""The participant base: a service with its own database, and idempotency built in.

A participant declares actions and compensations with :func:`action` and
:func:`compensation`. Each request carries the idempotency key
``<saga_id>/<step>/<action|compensation>``; the base class records the outcome in the
participant's own SQLite store *in the same transaction* as the business effect, so a
participant that crashes and restarts neither loses an effect nor applies one twice:

- a repeated key returns the recorded outcome (``replayed=True``) without re-applying;
- a compensation whose action never applied records a tombstone for the action's key, so
  a late duplicate of that action is refused instead of applied.

No Ray here: :mod:`saga_actors.actors` turns a subclass into a named Ray actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from saga_actors.errors import ActionRefusedError, NonRetryableError, StepError
from saga_actors.messages import (
    NotJSONError,
    StepReply,
    StepRequest,
    call_id,
    encode_json,
    idempotency_key,
)

F = TypeVar("F", bound=Callable[..., Any])

_EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS saga_effects (
    key TEXT PRIMARY KEY,
    saga_id TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL,          -- applied | tombstone | noop
    output TEXT NOT NULL,
    at REAL NOT NULL
)
"""


def action(fn: F) -> F:
    """Mark a method as an action. It gets a :class:`StepContext` and returns a dict."""
    fn.__saga_role__ = ("action", None)  # type: ignore[attr-defined]
    return fn


def compensation(of: str) -> Callable[[F], F]:
    """Mark a method as the compensation of the action named ``of``."""

    def mark(fn: F) -> F:
        fn.__saga_role__ = ("compensation", of)  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class StepContext:
    """What a handler sees; ``db`` is the participant's store, inside the transaction."""

    saga_id: str
    step: str
    kind: str
    attempt: int
    data: dict[str, Any]
    action_output: dict[str, Any] | None
    db: sqlite3.Connection


class Fault(BaseModel):
    """An injected fault for demos and tests: delay a method and/or make it fail."""

    model_config = ConfigDict(extra="forbid")

    delay_s: float = Field(0.0, ge=0, description="Pause before the effect (cancellable).")
    fail: bool = Field(False, description="Raise instead of applying the effect.")
    retryable: bool = Field(False, description="Whether the injected failure is retryable.")
    times: int | None = Field(None, ge=1, description="Fault the first N calls only.")


class Participant:
    """Base class of participant services. Subclasses set ``name`` and declare handlers."""

    name: ClassVar[str] = ""

    def __init__(
        self, *, store_path: str | Path, name: str | None = None, faults: dict | None = None
    ) -> None:
        self.participant_name = name or type(self).name or type(self).__name__.lower()
        self.store_path = Path(store_path)
        self.store_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.store_path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(_EFFECTS_SCHEMA)
        self.setup(self.db)
        self.db.execute("COMMIT")
        self._locks: dict[str, asyncio.Lock] = {}
        self._calls: dict[str, asyncio.Task] = {}  # requests running, by call id
        self._cancelled_early: dict[str, bool] = {}  # cancelled before they arrived
        self._batch: list[tuple[StepRequest, Callable[[StepContext], Any], asyncio.Future]] = []
        self._faults: dict[str, Fault] = {}
        self._fault_calls: dict[str, int] = {}
        self.set_faults(faults or {})

    # --- for subclasses -------------------------------------------------------------

    def setup(self, db: sqlite3.Connection) -> None:
        """Create the business tables (runs inside a transaction, on every start)."""

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

    # --- what the runtime calls -----------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Name, actions and compensations (compensation -> the action it undoes)."""
        handlers = self.handlers()
        return {
            "name": self.participant_name,
            "actions": sorted(m for m, (r, _) in handlers.items() if r == "action"),
            "compensations": {m: of for m, (r, of) in handlers.items() if r == "compensation"},
        }

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
                    recorded = self._recorded(req.key)
                    if recorded is not None:
                        return recorded
                    try:
                        await self._inject(req.method)
                    except StepError as exc:
                        return _failed(exc)
                return await self._apply(req, getattr(self, req.method))

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
                while len(self._cancelled_early) > 10_000:  # answered before the cancel came
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
            row = self._action_row(saga_id, step)
            if row is not None:
                applied = row[0] == "applied"
                return {"applied": applied, "output": json.loads(row[1]) if applied else None}
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self._write(key, saga_id, step, "action", "fence", "tombstone", "{}")
                self.db.execute("COMMIT")
            except sqlite3.DatabaseError:
                self.db.execute("ROLLBACK")
                raise
            logger.info("{}: fenced {} (it never applied; it never will)",
                        self.participant_name, key)
            return {"applied": False, "output": None}

    @contextlib.asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of one idempotency key (everything done for a key is serialized);
        it is dropped once nobody waits for it, so busy_keys shows only keys in use."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                yield
            finally:
                if not lock._waiters:  # type: ignore[attr-defined]
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

    def _recorded(self, key: str) -> StepReply | None:
        row = self.db.execute(
            "SELECT kind, status, output FROM saga_effects WHERE key=?", (key,)
        ).fetchone()
        if row is None:
            return None
        kind, status, output = row
        if status == "tombstone":
            err = ActionRefusedError(f"{key}: compensated before it applied; refused")
            return StepReply(ok=False, error_type=type(err).__name__, error=str(err), retryable=False)
        return StepReply.model_construct(ok=True, output=json.loads(output), error_type=None,
                                          error=None, retryable=True, replayed=True)

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
        """Every effect queued in this loop turn: one transaction, one fsync. Each effect
        has its own savepoint, so a failing handler rolls back only itself."""
        batch, self._batch = self._batch, []
        db = self.db
        replies: list[StepReply] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for req, handler, _ in batch:
                db.execute("SAVEPOINT effect")
                with logger.contextualize(saga_id=req.saga_id, step=req.step,
                                          attempt=req.attempt, kind=req.kind):
                    reply, keep = self._apply_one(req, handler)
                db.execute("RELEASE effect" if keep else "ROLLBACK TO effect")
                if not keep:
                    db.execute("RELEASE effect")
                replies.append(reply)
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:  # the store itself failed: nothing applied
            if db.in_transaction:
                db.execute("ROLLBACK")
            replies = [_failed(exc)] * len(batch)
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    def _apply_one(
        self, req: StepRequest, handler: Callable[[StepContext], Any]
    ) -> tuple[StepReply, bool]:
        """Apply one effect inside the open transaction; (reply, whether to keep it)."""
        recorded = self._recorded(req.key)
        if recorded is not None:  # a repeated key (or another process got here first)
            return recorded, False
        try:
            status = "applied"
            applied = self._applied_action_output(req) if req.kind == "compensation" else None
            if req.kind == "compensation" and applied is None:
                # Nothing to undo: tombstone the action so a late duplicate is refused.
                action_key = idempotency_key(req.saga_id, req.step, "action")
                self._insert(action_key, req, "action", "tombstone", {})
                status, output = "noop", {"noop": True}
            else:
                # An action whose reply the saga never journaled (a timeout, a crash, a
                # deadline mid-call) is undone with the output this store recorded for it.
                action_output = req.action_output if req.action_output is not None else applied
                ctx = StepContext(req.saga_id, req.step, req.kind, req.attempt, req.data,
                                  action_output, self.db)
                output = handler(ctx)
                if output is None:
                    output = {}
                if not isinstance(output, dict):
                    raise TypeError(f"{req.method} returned {type(output).__name__}, not a dict")
            self._insert(req.key, req, req.kind, status, output)
        except Exception as exc:  # business failure (its SQL too): roll back this effect only
            logger.info("{}.{} failed: {}", self.participant_name, req.method, exc)
            return _failed(exc), False
        return StepReply.model_construct(ok=True, output=output, error_type=None, error=None,
                                          retryable=True, replayed=False), True

    def _applied_action_output(self, req: StepRequest) -> dict[str, Any] | None:
        """The recorded output of the action ``req`` compensates; None if it never applied."""
        row = self._action_row(req.saga_id, req.step)
        return json.loads(row[1]) if row is not None and row[0] == "applied" else None

    def _action_row(self, saga_id: str, step: str) -> tuple[str, str] | None:
        """(status, output JSON) recorded for the action of ``step``, if any."""
        key = idempotency_key(saga_id, step, "action")
        return self.db.execute("SELECT status, output FROM saga_effects WHERE key=?",
                               (key,)).fetchone()

    def _insert(self, key: str, req: StepRequest, kind: str, status: str, output: dict) -> None:
        try:
            encoded = encode_json(output)
        except NotJSONError as exc:  # raised before the effect is kept
            raise NonRetryableError(f"{req.method} returned output that is {exc}; its effect "
                                    "was not applied") from None
        self._write(key, req.saga_id, req.step, kind, req.method, status, encoded)

    def _write(self, key: str, saga_id: str, step: str, kind: str, method: str, status: str,
               encoded: str) -> None:
        self.db.execute("INSERT INTO saga_effects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, saga_id, step, kind, method, status, encoded, time.time()))


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
