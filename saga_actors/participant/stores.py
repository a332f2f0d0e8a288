"""A participant's own database: an SQLite file (the default) or a PostgreSQL schema.

Handlers write SQL once, in the sqlite3 dialect's parameter styles (``?`` or ``:name``),
and it runs on both: on PostgreSQL the placeholders become psycopg's. Keep the SQL itself
portable (``INSERT ... ON CONFLICT DO NOTHING``, ``TEXT``/``INTEGER``/``DOUBLE PRECISION``).

Both connections add ``begin(keys)`` and ``end(keep)``. On SQLite ``begin`` takes the
file's write lock (``BEGIN IMMEDIATE``): one transaction at a time, whichever process (a
participant's replicas share the file; a restart racing its zombie never interleaves). On
PostgreSQL it takes a transaction-scoped advisory lock per idempotency key it is given
(else, setting up, one of the schema): the replicas of a participant commit side by side,
and two that are given the same key at once apply it once (the second finds the first's
record). Effects on the same business rows are then ordered by the server's own row locks:
write them with single statements (``UPDATE ... SET qty = qty - ? WHERE qty >= ?``).

No Ray here.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from saga_actors.errors import ParticipantStoreError, StoreUnavailableError
from saga_actors.journal.sqlite_file import use_wal
from saga_actors.urls import is_postgres, participant_store_url, stores_beside  # noqa: F401

STORE_SCHEMA_VERSION = 1
# a store server out of reach (a restart, dropped connections) is waited for this long,
# retrying, before the effect fails (the saga then retries it under its own policy)
STORE_OUTAGE_WAIT_S = 60.0
# a store another connection holds (a blocking handler's commit, an offline reader) is
# waited for this long before the effect fails (and is retried)
STORE_BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5
EFFECTS_TABLE = "saga_effects"
_META_TABLE = "saga_store_meta"  # PostgreSQL only: SQLite keeps the version in user_version


def check_reachable(store_url: str) -> None:
    """Raise :class:`ParticipantStoreError` within seconds if the server of ``store_url`` is
    out of reach or refuses the login (before any participant is started)."""
    PostgresStore(participant_store_url(store_url, "check")).connect().close()


def open_store(location: str | Path, *, read_only: bool = False,
               default_schema: str = "participant") -> Store:
    """The store at ``location``: a file path, or ``postgresql://...?schema=NAME``
    (without ``schema``: ``default_schema``, the participant's name)."""
    if is_postgres(location):
        return PostgresStore(str(location), read_only=read_only, schema=default_schema)
    return SqliteStore(Path(location), read_only=read_only)


class Store:
    """Where one participant keeps its effects and business tables."""

    location: str
    errors: tuple[type[BaseException], ...]  # what a failing store raises

    def connect(self) -> Any:
        """A connection (``execute``, ``executemany``, ``cursor``, ``begin``, ``end``)."""
        raise NotImplementedError

    def prepare(self, db: Any) -> None:
        """Inside the first write transaction: make the place the tables go."""

    def version(self, db: Any) -> int:
        raise NotImplementedError

    def set_version(self, db: Any, version: int) -> None:
        raise NotImplementedError

    def tables(self, db: Any) -> set[str]:
        raise NotImplementedError

    def unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the store's server is out of reach (worth waiting out)."""
        return isinstance(exc, StoreUnavailableError)

    def check(self, db: Any) -> None:
        """Refuse a store from a newer saga_actors, or one that is someone else's; a store
        from before versions (0, with the effects table) is version 1."""
        version = self.version(db)
        tables = self.tables(db) - {_META_TABLE}
        if version > STORE_SCHEMA_VERSION:
            raise ParticipantStoreError(self.location, f"schema version {version} is newer "
                                        f"than this saga_actors ({STORE_SCHEMA_VERSION}); "
                                        "upgrade saga_actors")
        if version == 0 and tables and EFFECTS_TABLE not in tables:
            raise ParticipantStoreError(self.location, "not a saga_actors participant store "
                                        f"(it has tables {sorted(tables)[:5]} and no "
                                        f"{EFFECTS_TABLE})")


# --- SQLite -----------------------------------------------------------------------------


class SqliteConnection(sqlite3.Connection):
    """sqlite3's own connection, with the store's transaction calls."""

    def begin(self, keys: Iterable[str] | None = None) -> None:
        self.execute("BEGIN IMMEDIATE")  # (one writer at a time: the keys need no lock)

    def end(self, keep: bool) -> None:
        if self.in_transaction:
            self.execute("COMMIT" if keep else "ROLLBACK")


class SqliteStore(Store):
    errors = (sqlite3.DatabaseError,)

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.location = str(path)
        self._read_only = read_only

    def connect(self) -> SqliteConnection:
        if self._read_only:
            return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                   factory=SqliteConnection)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=STORE_BUSY_TIMEOUT_S,
                             factory=SqliteConnection)
        use_wal(db, STORE_BUSY_TIMEOUT_S)
        db.execute("PRAGMA synchronous=FULL")
        return db

    def version(self, db: Any) -> int:
        return db.execute("PRAGMA user_version").fetchone()[0]

    def set_version(self, db: Any, version: int) -> None:
        db.execute(f"PRAGMA user_version={int(version)}")

    def tables(self, db: Any) -> set[str]:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# --- PostgreSQL -------------------------------------------------------------------------


class PostgresStore(Store):
    """A schema of its own in a PostgreSQL database (``?schema=``, else ``schema``)."""

    def __init__(self, url: str, *, read_only: bool = False,
                 schema: str = "participant") -> None:
        import psycopg

        self.errors = (psycopg.Error, StoreUnavailableError)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.schema = query.pop("schema", schema)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", self.schema):
            raise ParticipantStoreError(url, f"schema {self.schema!r} is not a plain SQL name "
                                        "(letters, digits and _, at most 63)")
        # PostgreSQL folds unquoted names (search_path) to lower case: use that name
        # everywhere, or a participant called Payment would make a schema it cannot see
        self.schema = self.schema.lower()
        query.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
        busy_ms = int(STORE_BUSY_TIMEOUT_S * 1000)
        options = f"-c search_path={self.schema} -c lock_timeout={busy_ms}"
        if read_only:
            options += " -c default_transaction_read_only=on"
        self._options = options
        self.location = urlunsplit(parts._replace(query=urlencode(
            {k: v for k, v in query.items() if k != "connect_timeout"} | {"schema": self.schema})))
        self._conninfo = urlunsplit(parts._replace(query=urlencode(query)))

    def connect(self) -> PgConnection:
        return PgConnection(self._conninfo, self._options, self.schema, self.location)

    def unavailable(self, exc: BaseException) -> bool:
        import psycopg

        # a dropped connection, a server shutting down or starting up, a lock wait past
        # lock_timeout: all pass
        return isinstance(exc, (StoreUnavailableError, psycopg.OperationalError))

    def prepare(self, db: Any) -> None:
        db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        db.execute(f"CREATE TABLE IF NOT EXISTS {_META_TABLE} "
                   "(key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def version(self, db: Any) -> int:
        if _META_TABLE not in self.tables(db):
            return 0
        row = db.execute(f"SELECT value FROM {_META_TABLE} WHERE key='schema_version'"
                         ).fetchone()
        return int(row[0]) if row else 0

    def set_version(self, db: Any, version: int) -> None:
        db.execute(f"INSERT INTO {_META_TABLE} VALUES ('schema_version', ?) ON CONFLICT (key) "
                   "DO UPDATE SET value = EXCLUDED.value", (str(int(version)),))

    def tables(self, db: Any) -> set[str]:
        return {r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
            (self.schema,))}


class PgConnection:
    """A psycopg connection that reads the sqlite3 dialect's placeholders, in autocommit
    outside ``begin()``/``end()``. A connection the server dropped (a restart, a kill)
    raises :class:`StoreUnavailableError` and is opened again at the next statement
    outside a transaction."""

    def __init__(self, conninfo: str, options: str, schema: str, location: str) -> None:
        import psycopg

        self._conninfo = conninfo
        self._options = options
        self._schema = schema
        self._location = location
        try:
            self._conn = self._open()
        except StoreUnavailableError as exc:  # at start: the URL may be wrong, say so
            raise ParticipantStoreError(self._location, "cannot reach or log in to the "
                                        f"server: {exc.problem}") from None
        self._down = psycopg.OperationalError
        status = psycopg.pq.TransactionStatus
        self._busy = (status.INTRANS, status.INERROR, status.ACTIVE)  # in a transaction

    def _open(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self._conninfo, autocommit=True, options=self._options)
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(self._location, _first_line(exc)) from None

    def _live(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn = self._open()
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status in self._busy

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        conn = self._conn if self.in_transaction else self._live()
        try:
            if not parameters:
                return conn.execute(sql)
            return conn.execute(_pg_sql(sql, isinstance(parameters, dict)), parameters)
        except self._down as exc:
            if conn.broken or conn.closed:
                raise StoreUnavailableError(self._location, _first_line(exc)) from None
            raise

    def executemany(self, sql: str, seq: Any) -> Any:
        return self.cursor().executemany(sql, seq)

    def cursor(self) -> PgCursor:
        return PgCursor(self._conn.cursor())

    def begin(self, keys: Iterable[str] | None = None) -> None:
        if keys is None:  # setting up: one writer per store (the schema is a checked name)
            self.execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext("
                         f"'saga_actors.store:{self._schema}'))")
            return
        # one lock per idempotency key, taken in one order (two batches never deadlock)
        ordered = sorted({f"saga_actors.key:{self._schema}:{k}" for k in keys})
        self.execute("BEGIN")
        if ordered:
            self.execute("SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtext(k) AS h "
                         "FROM unnest(?::text[]) AS k ORDER BY h) AS locks", (ordered,))

    def end(self, keep: bool) -> None:
        if self.in_transaction and not self._conn.broken:
            self.execute("COMMIT" if keep else "ROLLBACK")

    def close(self) -> None:
        self._conn.close()


class PgCursor:
    """A psycopg cursor that reads the sqlite3 dialect's placeholders."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, parameters: Any = ()) -> PgCursor:
        if parameters:
            self._cur.execute(_pg_sql(sql, isinstance(parameters, dict)), parameters)
        else:
            self._cur.execute(sql)
        return self

    def executemany(self, sql: str, seq: Any) -> PgCursor:
        rows = list(seq)
        if rows:
            self._cur.executemany(_pg_sql(sql, isinstance(rows[0], dict)), rows)
        return self

    def __iter__(self) -> Any:
        return iter(self._cur)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_TOKENS = re.compile(r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|(::)|(\?)|:([A-Za-z_]\w*)|(%)""")


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str, named: bool) -> str:
    """``?`` -> ``%s`` and ``:name`` -> ``%(name)s`` outside quotes; ``%`` -> ``%%``."""

    def swap(m: re.Match) -> str:
        quoted = m.group(1) or m.group(2)
        if quoted:
            return quoted.replace("%", "%%")
        if m.group(3):
            return "::"
        if m.group(4):
            return "%s"
        if m.group(5):
            return f"%({m.group(5)})s" if named else m.group(0)
        return "%%"

    return _TOKENS.sub(swap, sql)
