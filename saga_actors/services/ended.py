"""The sagas a host saw end, in order, for callers that wait on many at once
(``SagaRuntime.execute`` under load): one long poll per caller and host, answering every
end since the caller's cursor, instead of one open call per saga. No Ray.

Each host process has its own ``epoch``; a caller whose epoch is not the host's (its
first poll, or the host was restarted) starts from the host's present. What a caller
misses (its first poll raced an end, or its cursor fell out of the kept window) it finds
in the journal, which stays the truth."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

KEPT = 20_000  # the most recent ends a host remembers
GATHER_S = 0.02  # once something ended, wait this long for more before answering


class EndedLog:
    def __init__(self, kept: int = KEPT) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self.count = 0  # ends so far; the n of the newest
        self._ends: deque[tuple[str, str]] = deque(maxlen=kept)  # (saga_id, status)
        self._news: asyncio.Event | None = None

    def add(self, saga_id: str, status: str) -> None:
        self.count += 1
        self._ends.append((saga_id, status))
        if self._news is not None:
            self._news.set()

    def after(self, cursor: int) -> list[tuple[str, str]]:
        """The ends numbered past ``cursor`` that are still kept, oldest first."""
        first = self.count - len(self._ends) + 1  # the n of the oldest kept
        skip = max(0, cursor + 1 - first)
        return [self._ends[i] for i in range(skip, len(self._ends))]

    async def since(self, epoch: str | None, cursor: int, wait_s: float,
                    gather_s: float = GATHER_S) -> tuple[str, int, list[tuple[str, str]]]:
        """``(epoch, cursor, ends)``: every end past ``cursor``, waiting up to ``wait_s``
        for one (and then ``gather_s`` for more). Another epoch: the present, at once."""
        if epoch != self.epoch:
            return self.epoch, self.count, []
        if self.count <= cursor:
            if self._news is None:
                self._news = asyncio.Event()
            self._news.clear()
            try:
                await asyncio.wait_for(self._news.wait(), wait_s)
            except TimeoutError:
                return self.epoch, self.count, []
            await asyncio.sleep(gather_s)
        return self.epoch, self.count, self.after(cursor)
