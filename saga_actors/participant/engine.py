"""The engine of a participant: idempotency built in, behind the user's class.

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

The user-facing class is :class:`~saga_actors.participant.base.Participant`; this is what
it delegates to. No Ray here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from saga_actors.errors import (
    NonRetryableError,
    StepError,
    StoreUnavailableError,
)
from saga_actors.model.messages import (
    StepReply,
    StepRequest,
    idempotency_key,
)
from saga_actors.participant.effects import (
    EFFECTS_SCHEMA,
    action_row,
    call_cancelled,
    failed_reply,
    recorded_reply,
    request_call_id,
    write,
)
from saga_actors.participant.faults import Fault
from saga_actors.participant.group_commit import GroupCommit
from saga_actors.participant.handlers import (
    StepContext,
    mode_of,
)
from saga_actors.participant.outside import OutsideHandlers
from saga_actors.participant.stores import STORE_OUTAGE_WAIT_S, STORE_SCHEMA_VERSION, open_store

if TYPE_CHECKING:
    from saga_actors.participant.base import Participant

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




class ParticipantEngine(GroupCommit, OutsideHandlers):
    """The machinery of one participant: its store and idempotency records, a lock per
    idempotency key, the group commit of inline handlers, the thread pool of blocking ones,
    calls cancelled by id, waiting out a store outage, injected faults. A
    :class:`~saga_actors.participant.base.Participant` is composed with one, so that
    nothing a subclass names can collide with it."""

    def __init__(self, participant: Participant, location: str | Path, name: str,
                 faults: dict | None) -> None:
        """Open ``participant``'s store at ``location`` (its business tables made by its
        ``setup``, in the same transaction as the idempotency table)."""
        self._participant = participant
        self.participant_name = name
        self.store = open_store(location, default_schema=self.participant_name)
        self.store_path = self.store.location
        self.db = self.store.connect()
        self.db.begin()
        try:
            self.store.prepare(self.db)
            self.store.check(self.db)
            self.db.execute(EFFECTS_SCHEMA)
            self.store.set_version(self.db, STORE_SCHEMA_VERSION)
            participant.setup(self.db)
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


    def describe(self) -> dict[str, Any]:
        """Name, actions and compensations (compensation -> the action it undoes)."""
        handlers = self._participant.handlers()
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
        unknown = set(faults) - set(self._participant.handlers())
        if unknown:
            raise ValueError(f"{self.participant_name}: no handler named {sorted(unknown)}")
        self._faults = {m: f if isinstance(f, Fault) else Fault(**f) for m, f in faults.items()}
        self._fault_calls = {}

    async def handle(self, request: StepRequest | dict) -> StepReply:
        """Apply one action or compensation exactly once per idempotency key."""
        req = request if isinstance(request, StepRequest) else StepRequest(**request)
        role = self._participant.handlers().get(req.method)
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
                    recorded = recorded_reply(self.db, req.key)
                    if recorded is not None:
                        return recorded
                    try:
                        await self._inject(req.method)
                    except StepError as exc:
                        return self._failure(exc)
                handler = getattr(self._participant, req.method)
                return await self._apply_waiting_out_outages(req, handler)

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
                reply = failed_reply(exc)
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
        cid = request_call_id(request)
        if self._cancelled_early.pop(cid, None):
            return call_cancelled(cid)
        task = asyncio.ensure_future(self.handle(request))
        self._calls[cid] = task
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # the whole call was cancelled, not just this request
            return call_cancelled(cid)
        finally:
            if self._calls.get(cid) is task:
                del self._calls[cid]

    async def handle_many(self, requests: list[StepRequest | dict]) -> list[StepReply]:
        """Several requests in one call (a host's batch), one reply each; each can be
        stopped alone with :meth:`cancel_calls`."""
        outcomes = await asyncio.gather(*(self.handle_call(r) for r in requests),
                                        return_exceptions=True)
        # a malformed request gets its own failed reply, not the batch's
        return [o if isinstance(o, StepReply) else failed_reply(o) for o in outcomes]

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
            row = action_row(self.db, saga_id, step)
            if row is not None:
                applied = row[0] == "applied"
                return {"applied": applied, "output": json.loads(row[1]) if applied else None}
            self.db.begin([key])
            try:
                write(self.db, key, saga_id, step, "action", "fence", "tombstone", "{}")
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

    def busy(self) -> bool:
        """Whether any call is under way."""
        return bool(self._calls)

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
        return failed_reply(exc)

    def _say_if_slow(self, method: str, seconds: float) -> None:
        if seconds > SLOW_INLINE_S and method not in self._slow_said:
            self._slow_said.add(method)
            logger.warning("{}.{} took {:.1f}s on the participant's event loop, holding up "
                           "every saga that uses it: make it `async def`, or "
                           "@action(blocking=True) if it calls a blocking library",
                           self.participant_name, method, seconds)

