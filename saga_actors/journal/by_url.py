"""A journal by its URL: the backend each scheme names. No Ray."""

from __future__ import annotations

from saga_actors.errors import JournalError
from saga_actors.journal.base import Journal


def open_journal(url: str, *, create: bool = True, read_only: bool = False) -> Journal:
    """Open the journal at ``url``: ``memory://NAME``, ``sqlite:///PATH`` or
    ``postgresql://user@host:port/dbname`` (``?schema=NAME``, default ``saga_actors``).

    ``create=False`` refuses a journal that does not exist yet (only the runtime that
    accepts sagas creates one); ``read_only=True`` never writes (offline tools).
    """
    if not isinstance(url, str) or "://" not in url:
        raise JournalError(str(url), "not a journal URL (expected memory://NAME or sqlite:///PATH)")
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        from saga_actors.journal.memory import MemoryJournal

        return MemoryJournal(url)
    if scheme == "sqlite":
        from saga_actors.journal.sqlite import SqliteJournal

        return SqliteJournal(url, create=create, read_only=read_only)
    if scheme in ("postgresql", "postgres"):
        from saga_actors.journal.postgres import PostgresJournal

        return PostgresJournal(url, create=create, read_only=read_only)
    raise JournalError(url, f"unknown journal scheme {scheme!r} (known: memory, sqlite, "
                            "postgresql)")
