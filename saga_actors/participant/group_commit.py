"""A participant's inline (``def``) handlers: applied on its event loop, many effects in
one transaction (one fsync for all of them), each with its idempotency record; a failing
one rolls back alone. A part of :class:`~saga_actors.participant.engine.ParticipantEngine`.
No Ray."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from saga_actors.model.messages import StepReply, StepRequest, idempotency_key
from saga_actors.participant.effects import (
    applied_reply,
    checked,
    insert,
    keys_of,
    reply_of,
    rows_for,
)
from saga_actors.participant.handlers import StepContext


class GroupCommit:
    """Inline handlers, group-committed (mixed into :class:`ParticipantEngine`)."""

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
            db.begin(keys_of([req for req, _, _ in batch]))
            rows = rows_for(db, [req for req, _, _ in batch])
            for req, handler, _ in batch:
                recorded = reply_of(req.key, rows.get(req.key))
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
                insert(db, action_key, req, "action", "tombstone", {})
                written[action_key] = ("action", "tombstone", "{}")
                status, output = "noop", {"noop": True}
            else:
                # An action whose reply the saga never journaled (a timeout, a crash, a
                # deadline mid-call) is undone with the output this store recorded for it.
                action_output = req.action_output if req.action_output is not None else applied
                began = time.monotonic()
                output = checked(req, handler(self._context(req, action_output, db)))
                self._say_if_slow(req.method, time.monotonic() - began)
            written[req.key] = (req.kind, status, insert(db, req.key, req, req.kind,
                                                               status, output))
        except Exception as exc:  # business failure (its SQL too): roll back this effect only
            self._say_failed(req, exc)
            return self._failure(exc), False
        rows.update(written)
        return applied_reply(output), True
