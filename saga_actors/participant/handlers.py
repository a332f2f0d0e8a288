"""How a participant's handlers are declared and what they see. No Ray.

Three kinds of handler, all with the same idempotency (the key's record commits in ONE
transaction with the handler's own writes):

- ``def`` (inline): runs on the participant's event loop inside the group commit (many
  effects, one transaction, one fsync). Fast; it must not wait on the outside world, or
  every saga using the participant waits with it.
- ``async def``: awaited on the event loop, so it may await outside I/O (a payment
  provider, a carrier); cancelled at its step's timeout. Its ``ctx.db`` statements come
  after its last ``await``: the transaction starts at the first statement and commits in
  the same loop turn as the handler returns. Awaiting with a transaction open fails the
  effect with :class:`HandlerAwaitedInTransaction` (it would hold the store's write lock
  across other sagas' work).
- ``@action(blocking=True)`` ``def``: runs in the participant's bounded thread pool (a
  blocking client library), with its own connection. Its transaction starts at its first
  ``ctx.db`` statement (so call out first, then record); if its call was cancelled (its
  timeout, a saga's cancel) before it commits, its effect is rolled back and refused.

``ctx.idempotency_key`` is the effect's key: hand it to outside services that take one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from saga_actors.errors import NonRetryableError

F = TypeVar("F", bound=Callable[..., Any])


def action(fn: F | None = None, *, blocking: bool = False) -> Any:
    """Mark a method as an action: ``@action``, or ``@action(blocking=True)`` for a plain
    function that blocks (it runs in the participant's thread pool)."""

    def mark(fn: F) -> F:
        fn.__saga_role__ = ("action", None)  # type: ignore[attr-defined]
        fn.__saga_blocking__ = blocking  # type: ignore[attr-defined]
        return fn

    return mark(fn) if fn is not None else mark


def compensation(of: str, *, blocking: bool = False) -> Callable[[F], F]:
    """Mark a method as the compensation of the action named ``of``."""

    def mark(fn: F) -> F:
        fn.__saga_role__ = ("compensation", of)  # type: ignore[attr-defined]
        fn.__saga_blocking__ = blocking  # type: ignore[attr-defined]
        return fn

    return mark


def mode_of(fn: Callable[..., Any]) -> str:
    """``inline``, ``async`` or ``blocking``: how a handler is run."""
    if inspect.iscoroutinefunction(fn):
        return "async"
    return "blocking" if getattr(fn, "__saga_blocking__", False) else "inline"


@dataclass
class StepContext:
    """What a handler sees; ``db`` is the participant's store, inside the effect's
    transaction (for async and blocking handlers it begins at the first statement)."""

    saga_id: str
    step: str
    kind: str
    attempt: int
    data: dict[str, Any]
    action_output: dict[str, Any] | None
    db: Any
    idempotency_key: str = field(default="")
    """``<saga_id>/<step>/<action|compensation>``: the same on every retry and after any
    crash. Pass it to outside services that deduplicate by key (payment providers do)."""
    load_input: Callable[[], Any] | None = field(default=None, repr=False)

    @property
    def input(self) -> Any:
        """The saga's input as its typed model (``ctx.data`` has it as a dict, with the
        outputs of the steps before). Raises :class:`NonRetryableError` if the saga's
        definition cannot be found here."""
        if self.load_input is None:
            raise NonRetryableError("ctx.input is not available outside a participant call")
        return self.load_input()


class HandlerAwaitedInTransaction(NonRetryableError):
    """An ``async def`` handler awaited after writing to ``ctx.db``: its effect is undone."""


class EffectDB:
    """``ctx.db`` of an async or blocking handler: a store connection whose transaction
    begins (the store's write lock) at the first statement and is finished by the
    participant, together with the idempotency record."""

    # executescript commits whatever is pending: the effect would not be one transaction
    _REFUSED = frozenset({"commit", "rollback", "close", "isolation_level", "executescript",
                          "end"})

    def __init__(self, conn: Any, keys: list[str] | None = None) -> None:
        self._conn = conn
        self._keys = keys  # the idempotency keys its transaction locks (PostgreSQL)
        self.begun = False
        self.closed = False

    def begin(self) -> None:
        """Open the effect's transaction (once)."""
        if self.closed:
            raise NonRetryableError("ctx.db is closed: the handler's call is over")
        if not self.begun:
            self._conn.begin(self._keys)
            self.begun = True

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        self.begin()
        return self._conn.execute(sql, parameters)

    def executemany(self, sql: str, seq: Any) -> Any:
        self.begin()
        return self._conn.executemany(sql, seq)

    def cursor(self) -> Any:
        """A cursor inside the effect's transaction."""
        self.begin()
        return self._conn.cursor()

    def finish(self, keep: bool) -> None:
        """Commit (``keep``) or roll back the effect; ``ctx.db`` is closed afterwards."""
        self.closed = True
        if self.begun:
            self._conn.end(keep)
        self.begun = False

    def __getattr__(self, name: str) -> Any:
        if name in self._REFUSED:
            raise AttributeError(f"ctx.db.{name}: the participant ends the effect's "
                                 "transaction itself")
        return getattr(self._conn, name)


class _NoAwaitInTransaction:
    """Runs a handler coroutine, failing it if it awaits while ``db`` holds a transaction."""

    def __init__(self, coro: Coroutine[Any, Any, Any], db: EffectDB, method: str) -> None:
        self._coro = coro
        self._db = db
        self._method = method

    def __await__(self) -> Generator[Any, Any, Any]:
        it = self._coro.__await__()
        send: Any = None
        throw: BaseException | None = None
        while True:
            try:
                yielded = it.throw(throw) if throw is not None else it.send(send)
            except StopIteration as stop:
                return stop.value
            if self._db.begun:  # it awaits with the store's write lock held: refuse
                self._db.finish(keep=False)
                self._db.closed = True
                throw, send = HandlerAwaitedInTransaction(
                    f"{self._method} awaited after writing to ctx.db; its writes were undone "
                    "(await outside calls first, then write)"), None
                continue
            try:
                send, throw = (yield yielded), None
            except BaseException as exc:  # a cancel (its timeout) lands in the handler
                send, throw = None, exc


def run_async_handler(handler: Callable[..., Any], ctx: StepContext,
                      db: EffectDB) -> _NoAwaitInTransaction:
    """Await this: the handler's output, with the no-await-in-transaction rule enforced."""
    return _NoAwaitInTransaction(handler(ctx), db, getattr(handler, "__name__", "handler"))
