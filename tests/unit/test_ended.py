"""A host's log of the sagas that ended there, which ``execute`` polls under load. No Ray."""

from __future__ import annotations

import asyncio

from saga_actors.services.ended import EndedLog


def test_a_poll_answers_every_end_past_its_cursor_and_a_new_caller_starts_at_the_present():
    async def scenario():
        log = EndedLog(kept=3)
        epoch, cursor, ends = await log.since(None, 0, wait_s=1)  # a new caller: the present
        assert (cursor, ends) == (0, [])
        log.add("a", "COMPLETED")
        log.add("b", "FAILED")
        assert await log.since(epoch, cursor, wait_s=1) == (
            epoch, 2, [("a", "COMPLETED"), ("b", "FAILED")])
        for saga_id in "cdef":
            log.add(saga_id, "COMPLETED")
        # only the last three are kept: what fell out is read from the journal instead
        assert await log.since(epoch, 2, wait_s=1) == (
            epoch, 6, [("d", "COMPLETED"), ("e", "COMPLETED"), ("f", "COMPLETED")])
        # another epoch (the host was restarted): the present, nothing else
        assert await log.since("other", 0, wait_s=1) == (epoch, 6, [])

    asyncio.run(scenario())


def test_a_poll_waits_for_the_next_end_and_gives_up_after_its_wait():
    async def scenario():
        log = EndedLog()
        epoch, cursor, _ = await log.since(None, 0, wait_s=1)
        assert await log.since(epoch, cursor, wait_s=0.05) == (epoch, 0, [])  # nothing ended
        waiting = asyncio.ensure_future(log.since(epoch, cursor, wait_s=5, gather_s=0.01))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        log.add("a", "COMPLETED")
        log.add("b", "COMPLETED")  # in the gathering window: the same answer
        assert await asyncio.wait_for(waiting, 5) == (
            epoch, 2, [("a", "COMPLETED"), ("b", "COMPLETED")])

    asyncio.run(scenario())
