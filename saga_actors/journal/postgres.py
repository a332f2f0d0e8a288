"""PostgreSQL journal: for clusters, where every node reaches the same server.

``postgresql://user@host:port/dbname`` (``?schema=NAME``: the tables' schema, default
``saga_actors``). psycopg 3: a small connection pool for reads and plain writes, and one
writer thread that group-commits (many sagas' transitions, one transaction, one WAL flush):
the SQLite journal's committer (:mod:`saga_actors.journal.writes`). The same contract: seq
fencing (a stale writer is refused and changes nothing), schema creation and versioning;
a schema that belongs to something else, or to a newer saga_actors, is refused before
anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from saga_actors.errors import JournalError
from saga_actors.journal import reads
from saga_actors.journal.base import SCHEMA_VERSION, Journal, JournalConflictError
from saga_actors.journal.writes import (
    CommitArgs,
    CreateArgs,
    GroupCommitted,
    commit_args,
    create_args,
)
from saga_actors.model.records import SagaRecord, Signal, Transition
from saga_actors.model.state import SagaStatus

CONNECT_TIMEOUT_S = 5  # an unreachable server is an error within seconds, not a hang
POOL_SIZE = 4  # reads and plain writes of one process; group commits use their own
DEFAULT_SCHEMA = "saga_actors"

_TABLES = """
CREATE TABLE IF NOT EXISTS {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.sagas (
    saga_id TEXT PRIMARY KEY,
    saga_type TEXT NOT NULL,
    placement TEXT NOT NULL,
    status TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sagas_status ON {s}.sagas (status, placement, created_at);
CREATE INDEX IF NOT EXISTS sagas_created ON {s}.sagas (created_at);
CREATE INDEX IF NOT EXISTS sagas_updated ON {s}.sagas (updated_at);
CREATE INDEX IF NOT EXISTS sagas_status_created ON {s}.sagas (status, created_at);
CREATE INDEX IF NOT EXISTS sagas_type ON {s}.sagas (saga_type, created_at);
CREATE INDEX IF NOT EXISTS sagas_type_status ON {s}.sagas (saga_type, status, created_at);
CREATE TABLE IF NOT EXISTS {s}.transitions (
    saga_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (saga_id, seq)
);
CREATE TABLE IF NOT EXISTS {s}.signals (
    saga_id TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (saga_id, signal_id)
)
"""


def split_url(url: str) -> tuple[str, str]:
    """(psycopg conninfo, schema) of a ``postgresql://...`` journal URL."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", DEFAULT_SCHEMA)
    if not schema.isidentifier():
        raise JournalError(url, f"schema {schema!r} is not a plain SQL name")
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    return urlunsplit(parts._replace(query=urlencode(query))), schema


class PostgresJournal(GroupCommitted, Journal):
    """The cluster journal backend (see the module docstring)."""

    def __init__(self, url: str, *, create: bool = True, read_only: bool = False) -> None:
        self.url = url
        self._conninfo, self.schema = split_url(url)
        self._read_only = read_only
        self._q = {name: sql.SQL(text).format(s=sql.Identifier(self.schema))
                   for name, text in _STATEMENTS.items()}
        try:
            with self.connect() as db:
                exists = self._check_version(db)
                if not exists and (read_only or not create):
                    raise JournalError(url, f"no journal in schema {self.schema!r} (nothing "
                                       "was created there: is the URL right?)")
                if not read_only:
                    self._migrate(db)
        except psycopg.Error as exc:
            raise JournalError(url, _explain(exc)) from None
        # a connection the server dropped (a restart, a kill) is replaced when handed out
        self._pool = ConnectionPool(self._conninfo, min_size=1, max_size=POOL_SIZE, open=True,
                                    kwargs={"autocommit": False}, configure=self._configure,
                                    check=ConnectionPool.check_connection,
                                    timeout=CONNECT_TIMEOUT_S * 2)

    # --- set-up -------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        """A new connection with the journal's settings."""
        db = psycopg.connect(self._conninfo, autocommit=False)
        self._configure(db)
        return db

    def _configure(self, db: psycopg.Connection) -> None:
        if self._read_only:
            db.execute("SET default_transaction_read_only = on")
        db.execute("SET synchronous_commit = on")  # a commit is durable when it returns
        db.commit()

    def _check_version(self, db: psycopg.Connection) -> bool:
        """Whether a journal is there; refuse a schema that is someone else's, or newer."""
        tables = {r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (self.schema,))}
        if not tables:
            return False
        if "meta" not in tables:
            raise JournalError(self.url, f"schema {self.schema!r} holds tables "
                               f"{sorted(tables)[:5]} but is not a saga_actors journal (it "
                               "has no schema version)")
        row = db.execute(self._q["version"]).fetchone()
        if row is None:
            raise JournalError(self.url, f"schema {self.schema!r} is not a saga_actors "
                               "journal (it has no schema version)")
        if int(row[0]) > SCHEMA_VERSION:
            raise JournalError(self.url, f"schema version {row[0]} is newer than this "
                               f"saga_actors ({SCHEMA_VERSION}); upgrade saga_actors")
        return True

    def _migrate(self, db: psycopg.Connection) -> None:
        # two processes may create the same journal at once: one waits for the other
        db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"saga_actors:{self.schema}",))
        db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        for statement in _TABLES.split(";"):
            if statement.strip():
                db.execute(sql.SQL(statement.strip()).format(s=sql.Identifier(self.schema)))
        db.execute(self._q["set_version"], (str(SCHEMA_VERSION),))
        db.execute(self._q["opened_at"], (repr(time.time()),))
        db.commit()

    # --- writes -------------------------------------------------------------------

    def _write(self, fn: Callable[[psycopg.Connection], Any]) -> Any:
        try:
            with self._pool.connection() as db:
                done = fn(db)
                db.commit()
                return done
        except psycopg.Error as exc:
            raise JournalError(self.url, f"write failed: {_explain(exc)}") from None

    def create(self, record: SagaRecord, *transitions: Transition) -> bool:
        return self.create_many([(record, *transitions)])[0]

    def create_many(self, created: list[tuple]) -> list[bool]:
        rows = [create_args(r, ts) for r, *ts in created]
        return self._write(lambda db: [self._apply_create(db, row) for row in rows])

    async def create_async(self, record: SagaRecord, *transitions: Transition) -> bool:
        return await self._grouped(self._apply_create, create_args(record, transitions))

    def commit(self, record: SagaRecord, *transitions: Transition) -> None:
        args = commit_args(record, transitions)
        self._write(lambda db: self._apply_commit(db, args))

    async def write(self, record: SagaRecord, *transitions: Transition) -> None:
        """Group commit: many sagas' transitions share one transaction; this returns only
        after the batch holding these transitions is committed."""
        await self._grouped(self._apply_commit, commit_args(record, transitions))

    def _apply_create(self, db: psycopg.Connection, args: CreateArgs) -> bool:
        row, first = args
        created = db.execute(self._q["create"], row).rowcount == 1
        if created:
            with db.cursor() as cur:
                cur.executemany(self._q["append"], first)
        return created

    def _apply_commit(self, db: psycopg.Connection, args: CommitArgs) -> bool:
        update, inserts = args
        if db.execute(self._q["update"], update).rowcount != 1:
            raise JournalConflictError(self.url, f"saga {update[4]}: seq {update[1]} is not next")
        with db.cursor() as cur:
            cur.executemany(self._q["append"], inserts)
        return True

    # --- reads --------------------------------------------------------------------

    def _read(self, query: Any, args: tuple = ()) -> list[tuple]:
        try:
            with self._pool.connection() as db:
                rows = db.execute(query, args).fetchall()
                db.rollback()  # end the read's transaction: no snapshot held in the pool
                return rows
        except psycopg.Error as exc:
            raise JournalError(self.url, f"read failed: {_explain(exc)}") from None

    def load(self, saga_id: str) -> SagaRecord | None:
        rows = self._read(self._q["load"], (saga_id,))
        return SagaRecord.model_validate_json(rows[0][0]) if rows else None

    def history(self, saga_id: str) -> list[Transition]:
        rows = self._read(self._q["history"], (saga_id,))
        return [Transition.model_validate_json(r[0]) for r in rows]

    def query(
        self,
        *,
        statuses: Iterable[SagaStatus] | None = None,
        saga_type: str | None = None,
        version: int | None = None,
        id_prefix: str | None = None,
        placement: str | None = None,
        since: float | None = None,
        until: float | None = None,
        updated_since: float | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[SagaRecord]:
        found = reads.records_query(
            self._sagas, reads.POSTGRES, statuses=statuses, saga_type=saga_type, version=version,
            id_prefix=id_prefix, placement=placement, since=since, until=until,
            updated_since=updated_since, limit=limit, offset=offset, newest_first=newest_first)
        if found is None:
            return []
        return [SagaRecord.model_validate_json(r[0])
                for r in self._read(found[0], tuple(found[1]))]

    def put_signal(self, signal: Signal) -> bool:
        row = (signal.saga_id, signal.signal_id, signal.at, signal.model_dump_json())
        return self._write(lambda db: db.execute(self._q["put_signal"], row).rowcount == 1)

    def signals(self, saga_id: str) -> list[Signal]:
        return [Signal.model_validate_json(r[0])
                for r in self._read(self._q["signals"], (saga_id,))]

    def correlated(self, saga_type: str, field: str, value: Any, *,
                   limit: int = 20) -> list[SagaRecord]:
        return [SagaRecord.model_validate_json(r) for r in reads.correlated(
            self._read, self._sagas, reads.POSTGRES, saga_type=saga_type, field=field, value=value,
            limit=limit)]

    def counts_by_type(self) -> dict[str, dict[str, int]]:
        return reads.counts_by_type(self._read, self._sagas)

    def activity(self, *, since: float, bucket_s: float, buckets: int) -> dict[str, Any]:
        return reads.activity(self._read, self._sagas, reads.POSTGRES, since=since,
                              bucket_s=bucket_s, buckets=buckets)

    @property
    def _sagas(self) -> str:
        return f'"{self.schema}".sagas'

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in SagaStatus}
        for status, n in self._read(self._q["counts"]):
            out[status] = n
        return out

    def begin(self, db: psycopg.Connection) -> None:
        """Nothing to do: psycopg opens a transaction at the first statement."""

    def end(self, db: psycopg.Connection, *, commit: bool) -> None:
        db.commit() if commit else db.rollback()

    def failure(self, exc: BaseException) -> tuple[str, bool] | None:
        if not isinstance(exc, psycopg.Error):
            return None
        # a dropped connection (a server restart, a kill) is opened again for the next batch
        return _explain(exc), isinstance(exc, psycopg.OperationalError)

    def close(self) -> None:
        self._stop_committer()
        self._pool.close()


_STATEMENTS = {
    "put_signal": "INSERT INTO {s}.signals VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
    "signals": "SELECT body FROM {s}.signals WHERE saga_id = %s ORDER BY at, signal_id",
    "version": "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
    "set_version": "INSERT INTO {s}.meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
    "opened_at": "INSERT INTO {s}.meta VALUES ('opened_at', %s) "
                 "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    "create": "INSERT INTO {s}.sagas VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
              "ON CONFLICT (saga_id) DO NOTHING",
    "append": "INSERT INTO {s}.transitions VALUES (%s, %s, %s)",
    "update": "UPDATE {s}.sagas SET status = %s, seq = %s, updated_at = %s, record = %s "
              "WHERE saga_id = %s AND seq = %s",
    "load": "SELECT record FROM {s}.sagas WHERE saga_id = %s",
    "history": "SELECT body FROM {s}.transitions WHERE saga_id = %s ORDER BY seq",
    "counts": "SELECT status, COUNT(*) FROM {s}.sagas GROUP BY status",
}


def _explain(exc: psycopg.Error) -> str:
    """The server's complaint, said for a person (unreachable, refused, no such database)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError):
        return f"cannot reach or log in to the server: {text}"
    return text
