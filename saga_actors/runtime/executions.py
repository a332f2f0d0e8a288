"""``SagaRuntime.execute`` with many hosted sagas under way in one process: no Ray call
stays open per saga. The sagas admitted in one event-loop turn go to each host in one
``start`` call, and one long poll per host (:class:`~saga_actors.services.ended.EndedLog`)
brings back every end. A Ray call costs both ends about a millisecond of CPU here, about
what a whole saga's journal writes cost: at 1,000 in flight this is about half the hosts'
CPU per saga.

The journal stays the truth: when a poll first reaches a host process (the first poll, or
the host was restarted) the sagas waited for there are read in the journal, and a saga
whose end no poll brings (it moved to another host) is read there every
``CHECK_EVERY_S``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from loguru import logger

from saga_actors.model.records import SagaRecord
from saga_actors.ray import calls

CHECK_EVERY_S = 10.0  # a saga waited for here is also looked up in the journal this often
POLL_WAIT_S = 5.0  # how long one long poll stays open when nothing ends
RETRY_S = 0.5  # after a failed poll (the host is restarting), before the next

Key = tuple[str, int]  # (placement, host index)


class Executions:
    """Hosted sagas this process waits for, by host. ``host(key)`` gives the host's
    handle (looked up again after ``forget(placement)``); ``terminal(saga_id)`` reads the
    journal."""

    def __init__(self, host: Callable[[Key], Any], forget: Callable[[str], None],
                 terminal: Callable[[str], bool]) -> None:
        self._host = host
        self._forget = forget
        self._terminal = terminal
        self._waiting: dict[Key, dict[str, asyncio.Future]] = {}
        self._to_start: dict[Key, list[SagaRecord]] = {}
        self._polls: dict[Key, asyncio.Task] = {}

    async def run(self, key: Key, record: SagaRecord) -> None:
        """Start ``record`` (just admitted) on host ``key`` and return once it ended."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._waiting.setdefault(key, {})[record.saga_id] = done
        batch = self._to_start.setdefault(key, [])
        batch.append(record)
        if len(batch) == 1:
            loop.call_soon(self._start, key)
        poll = self._polls.get(key)
        if poll is None or poll.done():
            self._polls[key] = asyncio.ensure_future(self._poll(key))
        try:
            while not done.done():
                await asyncio.wait((done,), timeout=CHECK_EVERY_S)
                if not done.done() and self._terminal(record.saga_id):
                    return
        finally:
            self._waiting[key].pop(record.saga_id, None)

    def _start(self, key: Key) -> None:
        records = self._to_start.pop(key, [])
        if not records:
            return
        try:
            ref = self._host(key).start.remote(
                [r.saga_id for r in records], [r.model_dump(mode="json") for r in records])
        except (calls.RayError, IndexError) as exc:
            self._lost(key, exc)
            return
        asyncio.wrap_future(ref.future()).add_done_callback(
            lambda f: f.cancelled() or f.exception() is None or self._lost(key, f.exception()))

    def _lost(self, key: Key, exc: BaseException) -> None:
        """A host that could not be reached: the supervisor starts its sagas from the
        journal; they are read there."""
        logger.warning("{} host {} did not take sagas now ({}); the supervisor will start "
                       "them", key[0], key[1], type(exc).__name__)
        self._forget(key[0])

    async def _poll(self, key: Key) -> None:
        epoch: str | None = None
        known: str | None = None  # the host process the sweep was made for
        cursor = 0
        while self._waiting.get(key):
            try:
                epoch, cursor, ended = await self._host(key).ended.remote(
                    epoch, cursor, POLL_WAIT_S)
            except (calls.RayError, IndexError):  # (IndexError: the hosts are fewer now)
                self._forget(key[0])
                epoch = None
                await asyncio.sleep(RETRY_S)
                continue
            waiting = self._waiting.get(key, {})
            if epoch != known:  # a first poll, or the host was restarted: what ended before
                known = epoch  # it answered is read in the journal
                self._sweep(waiting)
            for saga_id, status in ended:
                done = waiting.get(saga_id)
                if done is not None and not done.done():
                    done.set_result(status)

    def _sweep(self, waiting: dict[str, asyncio.Future]) -> None:
        for saga_id, done in list(waiting.items()):
            if not done.done() and self._terminal(saga_id):
                done.set_result("")

    def close(self) -> None:
        for poll in self._polls.values():
            poll.cancel()
        self._polls.clear()
