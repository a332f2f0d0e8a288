"""A participant's async and blocking handlers: each runs outside the group commit, in a
transaction of its own begun at its first ``ctx.db`` statement and committed with its
idempotency record; a blocking one in the participant's thread pool, its effect refused
if its call was cancelled first. A part of
:class:`~saga_actors.participant.engine.ParticipantEngine`. No Ray."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger

from saga_actors.model.messages import StepReply, StepRequest
from saga_actors.participant.effects import (
    applied_action_output,
    applied_reply,
    call_cancelled,
    checked,
    insert,
    keys_of,
    recorded_reply,
)
from saga_actors.participant.handlers import EffectDB, StepContext, run_async_handler


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


class OutsideHandlers:
    """Async and blocking handlers (mixed into :class:`ParticipantEngine`)."""

    async def _apply_outside(self, req: StepRequest, handler: Callable[[StepContext], Any],
                             mode: str) -> StepReply:
        """Run an async or a blocking handler in a transaction of its own, begun at its
        first ``ctx.db`` statement and committed with the idempotency record."""
        recorded = recorded_reply(self.db, req.key)
        if recorded is not None:
            return recorded
        action_output = req.action_output
        if req.kind == "compensation":
            applied = applied_action_output(self.db, req)
            if applied is None:  # nothing to undo: tombstoned in the group commit
                return await self._apply(req, handler)
            action_output = action_output if action_output is not None else applied
        if mode == "async":
            db = EffectDB(self.db, keys_of([req]))
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
            db = EffectDB(self._thread_connection(), keys_of([req]))
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
            output = checked(req, output)
            db.begin()
            recorded = recorded_reply(db, req.key)  # a compensation may have tombstoned it
            if recorded is not None:
                db.finish(keep=False)
                return recorded
            insert(db, req.key, req, req.kind, "applied", output)
            if call is None:
                db.finish(keep=True)
            else:
                with call.lock:
                    if call.cancelled:
                        db.finish(keep=False)
                        logger.info("{}: {} was cancelled before it committed; its effect "
                                    "is refused", self.participant_name, req.call_id)
                        return call_cancelled(req.call_id)
                    db.finish(keep=True)
        except Exception as exc:
            db.finish(keep=False)
            self._say_failed(req, exc)
            return self._failure(exc)
        return applied_reply(output)

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=type(self._participant).blocking_threads,
                                               thread_name_prefix=f"{self.participant_name}-")
        return self._threads

    def _thread_connection(self) -> Any:
        conn = getattr(self._thread_db, "conn", None)
        if conn is None:
            conn = self._thread_db.conn = self.store.connect()
        return conn
