"""The journal's SQLite file: its connections, the writer lock file beside it, its identity
(a file replaced while open is not written to), and SQLite's errors said in terms of the
file. No Ray."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path


class WriterConnection(sqlite3.Connection):
    """A connection with its own handle on the writer lock file (a ``flock`` is held per
    open file, so each connection needs its own to exclude the others)."""

    writer_lock: int | None = None

    def close(self) -> None:
        super().close()
        if self.writer_lock is not None:
            os.close(self.writer_lock)
            self.writer_lock = None


def lock_writer(db: sqlite3.Connection, *, wait: bool) -> bool:
    """Take the writer lock (False: held by another and ``wait`` is false). A connection
    without a lock file (read-only) takes nothing."""
    fd = getattr(db, "writer_lock", None)
    if fd is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock_writer(db: sqlite3.Connection) -> None:
    fd = getattr(db, "writer_lock", None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


WAL_RETRY_S = 0.01


def use_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """Put the file in WAL mode (a no-op once it is). Processes opening a new file at the
    same instant race for the switch, and SQLite tells the losers "database is locked"
    at once, without waiting out its busy timeout: they try again, up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if error_kind(exc) != "busy" or time.monotonic() > deadline:
                raise
        time.sleep(WAL_RETRY_S)


def identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


# SQLite's primary result codes (sqlite3.SQLITE_* from Python 3.11)
_KINDS = {5: "busy", 6: "busy", 8: "readonly", 11: "corrupt", 26: "corrupt"}


def error_kind(exc: sqlite3.DatabaseError) -> str | None:
    """busy, readonly or corrupt, by SQLite's error code (``sqlite_errorcode``); by its
    message only where there is no code (an error raised without one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return _KINDS.get(code & 0xFF)
    text = str(exc)
    if "locked" in text or "busy" in text:
        return "busy"
    if "readonly" in text or "read-only" in text:
        return "readonly"
    if "not a database" in text or "malformed" in text:
        return "corrupt"
    return None


def explain(path: Path, exc: sqlite3.DatabaseError) -> str:
    """SQLite's complaint, said in terms of the journal file."""
    text, kind = str(exc), error_kind(exc)
    if kind == "readonly":
        return f"{path} is read-only: the journal must be writable by the runtime ({text})"
    if kind == "corrupt":
        return f"{path} is corrupt or not an SQLite file ({text})"
    if kind == "busy":
        return f"{path}: {text}"
    return f"cannot open {path}: {text}"
