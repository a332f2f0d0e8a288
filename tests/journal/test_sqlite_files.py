"""Journal files in a bad way: locked, read-only, missing, corrupt, from a newer release,
someone else's, deleted while open. Each is a clear error, and the file is left as it was.
A new file opened by several processes at once (a journal, a participant's store) opens in
each."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import threading

import pytest

from saga_actors.errors import JournalError
from saga_actors.journal import open_journal
from saga_actors.journal.base import SCHEMA_VERSION
from saga_actors.journal.sqlite import SqliteJournal
from tests.journal.test_contract import rec, tr


def contents(path) -> tuple[bytes, bytes]:
    """The file's bytes and its write-ahead log's: what a reopen would read."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes(), wal.read_bytes() if wal.exists() else b""


@pytest.fixture
def journal_file(tmp_path):
    path = tmp_path / "journal.sqlite"
    j = open_journal(f"sqlite:///{path}")
    j.create(rec(), tr())
    j.close()
    return path


def test_a_locked_journal_is_refused_after_waiting_and_written_once_free(journal_file):
    url = f"sqlite:///{journal_file}"
    other = sqlite3.connect(journal_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    before = contents(journal_file)
    try:
        with pytest.raises(JournalError, match="locked by another process .waited 1s"):
            SqliteJournal(url, busy_timeout_s=1.0)
        other.execute("ROLLBACK")
        j = SqliteJournal(url, busy_timeout_s=1.0)
        other.execute("BEGIN IMMEDIATE")  # locked again while the journal is open
        before = contents(journal_file)
        with pytest.raises(JournalError, match="write failed: .*locked by another process"):
            j.create(rec("s2"), tr("s2"))
        assert contents(journal_file) == before
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert j.create(rec("s2"), tr("s2"))  # free again: the same journal works
    assert [r.saga_id for r in j.query()] == ["s1", "s2"]


@pytest.fixture
def immutable(journal_file):
    """The journal file made read-only in a way root cannot write through either."""
    subprocess.run(["chattr", "+i", str(journal_file)], check=True)
    yield journal_file
    subprocess.run(["chattr", "-i", str(journal_file)], check=True)


def test_a_read_only_journal_is_refused_at_open_and_can_still_be_read(immutable):
    before = contents(immutable)
    with pytest.raises(JournalError, match="is read-only: the journal must be writable"):
        open_journal(f"sqlite:///{immutable}")
    assert contents(immutable) == before
    reader = open_journal(f"sqlite:///{immutable}", read_only=True)  # offline tools still can
    assert [r.saga_id for r in reader.query()] == ["s1"]


def test_a_missing_journal_is_refused_where_one_must_exist(tmp_path):
    path = tmp_path / "moved" / "journal.sqlite"
    for kwargs in ({"create": False}, {"read_only": True}):
        with pytest.raises(JournalError, match="no journal at .* does not exist"):
            open_journal(f"sqlite:///{path}", **kwargs)
    assert not path.parent.exists()  # nothing was created in its place


def test_a_journal_deleted_while_open_is_not_written_to(journal_file):
    j = open_journal(f"sqlite:///{journal_file}")
    os.rename(journal_file, journal_file.with_name("elsewhere.sqlite"))
    with pytest.raises(JournalError, match="deleted or replaced while open"):
        j.create(rec("s2"), tr("s2"))
    assert not journal_file.exists()


@pytest.mark.parametrize("damage", ["corrupt", "newer", "foreign"])
def test_a_damaged_or_foreign_file_is_refused_and_left_alone(tmp_path, journal_file, damage):
    if damage == "corrupt":
        journal_file.write_bytes(b"this is not a database" * 100)
        message = "corrupt or not an SQLite file"
    elif damage == "newer":
        db = sqlite3.connect(journal_file)
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                   (str(SCHEMA_VERSION + 1),))
        db.commit()
        db.close()
        message = f"schema version {SCHEMA_VERSION + 1} is newer than this saga_actors"
    else:  # e.g. a participant's store given as the journal by mistake
        journal_file = tmp_path / "inventory.sqlite"
        db = sqlite3.connect(journal_file)
        db.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER)")
        db.commit()
        db.close()
        message = "an SQLite file but not a saga_actors journal"
    before = contents(journal_file)
    for kwargs in ({}, {"read_only": True}):
        with pytest.raises(JournalError, match=message):
            open_journal(f"sqlite:///{journal_file}", **kwargs)
    assert contents(journal_file) == before


def test_a_new_journal_folder_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "new" / "journal.sqlite"
    open_journal(f"sqlite:///{path}").close()
    assert path.parent.stat().st_mode & 0o777 == 0o700  # saga inputs, secrets too, are in it


def test_a_lone_saga_s_write_commits_at_once_and_never_waits_in_the_event_loop(journal_file):
    """While the process says it runs one saga alone, its write is committed in the
    caller's thread (done before it is awaited); with more sagas it goes to the writer
    thread (grouped); and while another process holds the write lock it goes to the thread
    too, so the event loop runs on, and it is committed once the lock is free."""
    j = open_journal(f"sqlite:///{journal_file}")
    other = sqlite3.connect(journal_file, isolation_level=None)
    sagas = ["s1", "s2"]
    j.write_alone_when(lambda: len(sagas) <= 1)

    async def submitted_and_done(seq: int) -> bool:
        write = asyncio.ensure_future(j.write(rec(seq=seq), tr(seq=seq)))
        await asyncio.sleep(0)  # the task submits its write
        done = j.load("s1").seq == seq
        await write
        return done

    async def go() -> int:
        assert not await submitted_and_done(1)  # two sagas: grouped, in the writer thread
        sagas.pop()
        assert await submitted_and_done(2)  # alone: already committed
        other.execute("BEGIN IMMEDIATE")  # another process takes the write lock
        write = asyncio.ensure_future(j.write(rec(seq=3), tr(seq=3)))
        ticks = 0
        while ticks < 20:  # the loop runs on while the write waits for the lock
            await asyncio.sleep(0.005)
            ticks += 1
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, timeout=10)
        return ticks

    try:
        assert asyncio.run(go()) == 20
        assert [t.seq for t in j.history("s1")] == [0, 1, 2, 3]
    finally:
        other.close()
        j.close()


def test_writers_queue_on_the_lock_file_and_each_commits_once_the_other_is_done(journal_file):
    """Two journal objects on one file (two processes, in effect): while one holds its
    write transaction, the other's write waits on the lock file (``<file>-writer``) rather
    than fail, and goes through once the first commits."""
    a = SqliteJournal(f"sqlite:///{journal_file}")
    b = SqliteJournal(f"sqlite:///{journal_file}", create=False)
    assert journal_file.with_name(journal_file.name + "-writer").exists()
    db = a.connect()
    a.begin(db)  # holds the lock file and SQLite's write lock
    done = threading.Event()
    writer = threading.Thread(target=lambda: (b.commit(rec(seq=1), tr(seq=1)), done.set()))
    writer.start()
    try:
        assert not done.wait(0.3)  # queued behind a's transaction
        db.execute("INSERT OR REPLACE INTO meta VALUES ('probe', '1')")
        a.end(db, commit=True)
        assert done.wait(10)
        assert b.load("s1").seq == 1
    finally:
        writer.join(10)
        db.close()
        a.close()
        b.close()


def test_opening_an_existing_journal_as_an_actor_writes_nothing(journal_file):
    """Every saga actor, host and service opens the journal (``create=False``): that must
    not queue for the write lock, so it leaves the file as it was."""
    before = contents(journal_file)
    j = open_journal(f"sqlite:///{journal_file}", create=False)
    try:
        assert j.load("s1") is not None
        assert contents(journal_file) == before
    finally:
        j.close()


def _open_at_once(kind: str, path: str, barrier, results) -> None:
    """One of several processes opening the same new file at the same instant."""
    from saga_actors.participant.stores import open_store

    barrier.wait()
    try:
        if kind == "journal":
            SqliteJournal(f"sqlite:///{path}").close()
        else:
            db = open_store(path).connect()
            db.begin()
            db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY)")
            db.end(keep=True)
            db.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("kind", ["journal", "participant store"])
def test_processes_opening_a_new_file_at_the_same_instant_all_open_it(tmp_path, kind):
    """Replicas of a participant share one SQLite file, and hosts one journal: started at
    once on a new file, they race to switch it to WAL, and SQLite tells the losers
    "database is locked" without waiting out the busy timeout (before they tried again,
    3 runs of this test in 5 failed)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    failures = []
    for trial in range(12):
        path = str(tmp_path / f"{trial}.sqlite")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(kind, path, barrier, results))
                 for _ in range(6)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        failures += [o for o in outcomes if o != "ok"]
    assert failures == []
