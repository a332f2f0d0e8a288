"""Notifier service: handlers that wait on the outside world.

``send_email`` is ``async def``: it awaits a mail provider (an HTTP call, in real life)
and is cancelled at its step's timeout. ``send_sms`` calls a blocking SMS client, so it is
``@action(blocking=True)``: it runs in the participant's thread pool and the participant
keeps serving other sagas meanwhile. Both follow the pattern: call out with
``ctx.idempotency_key`` (the provider drops a repeated key), THEN record in ``ctx.db``.

The providers here are stand-ins with a latency taken from the saga's data
(``mail_latency_s``, ``sms_latency_s``), so demos and tests can make them slow.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from saga_actors import Participant, StepContext, action, compensation


class MailProvider:
    """A stand-in for an async mail API that deduplicates by idempotency key."""

    def __init__(self) -> None:
        self.accepted: dict[str, str] = {}

    async def send(self, key: str, to: str, latency_s: float) -> str:
        await asyncio.sleep(latency_s)  # the network round trip
        return self.accepted.setdefault(key, f"msg-{len(self.accepted) + 1}")


class SmsClient:
    """A stand-in for a blocking SMS library (it holds its thread while it waits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: dict[str, str] = {}

    def send(self, key: str, to: str, latency_s: float) -> str:
        threading.Event().wait(latency_s)  # a blocking socket read
        with self._lock:
            return self.accepted.setdefault(key, f"sms-{len(self.accepted) + 1}")


class Notifier(Participant):
    """Sends order confirmations by e-mail (async) and SMS (blocking)."""

    name = "notifier"

    def __init__(self, **kwargs) -> None:
        self.mail = MailProvider()
        self.sms = SmsClient()
        super().__init__(**kwargs)

    def setup(self, db: Any) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS messages (message_id TEXT PRIMARY KEY, saga_id TEXT, "
            "channel TEXT NOT NULL, status TEXT NOT NULL)"
        )

    @action
    async def send_email(self, ctx: StepContext) -> dict:
        # ctx.input: the saga's input as its own model (ctx.data: the same, as a dict)
        message_id = await self.mail.send(ctx.idempotency_key, ctx.input.customer_id,
                                          ctx.data.get("mail_latency_s", 0.01))
        ctx.db.execute("INSERT INTO messages VALUES (?, ?, 'email', 'sent')",
                       (message_id, ctx.saga_id))
        return {"message_id": message_id}

    @compensation("send_email")
    async def retract_email(self, ctx: StepContext) -> dict:
        ctx.db.execute("UPDATE messages SET status='retracted' WHERE message_id=?",
                       (ctx.action_output["message_id"],))
        return {}

    @action(blocking=True)
    def send_sms(self, ctx: StepContext) -> dict:
        message_id = self.sms.send(ctx.idempotency_key, ctx.data["customer_id"],
                                   ctx.data.get("sms_latency_s", 0.01))
        ctx.db.execute("INSERT INTO messages VALUES (?, ?, 'sms', 'sent')",
                       (message_id, ctx.saga_id))
        return {"message_id": message_id}

    @compensation("send_sms", blocking=True)
    def retract_sms(self, ctx: StepContext) -> dict:
        ctx.db.execute("UPDATE messages SET status='retracted' WHERE message_id=?",
                       (ctx.action_output["message_id"],))
        return {}

    def outside_calls(self) -> dict[str, list[str]]:
        """Idempotency keys each outside service has accepted (what reached the world)."""
        return {"email": list(self.mail.accepted), "sms": list(self.sms.accepted)}

    def messages(self, saga_id: str | None = None) -> list[tuple[str, str]]:
        """(channel, status) of the messages recorded, for ``saga_id`` or all."""
        sql = "SELECT channel, status FROM messages"
        args: tuple = ()
        if saga_id:
            sql, args = sql + " WHERE saga_id=?", (saga_id,)
        return [tuple(r) for r in self.db.execute(sql + " ORDER BY rowid", args)]
