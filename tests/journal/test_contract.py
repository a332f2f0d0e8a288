"""One contract, every journal backend."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid

import pytest

from saga_actors import JournalError, SagaStatus
from saga_actors.journal import JournalConflictError, open_journal
from saga_actors.journal.base import SCHEMA_VERSION
from saga_actors.model.records import SagaRecord, Signal, Transition


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def journal(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = (f"memory://{uuid.uuid4().hex}" if request.param == "memory"
               else f"sqlite:///{tmp_path}/journal.sqlite")
    j = open_journal(url)
    yield j
    j.close()


def rec(saga_id="s1", *, seq=0, status=SagaStatus.STARTED, created=1.0, saga_type="order",
        placement="dedicated"):
    return SagaRecord(saga_id=saga_id, saga_type=saga_type, seq=seq, status=status,
                      input={"a": 1}, created_at=created, updated_at=created,
                      placement=placement)


def tr(saga_id="s1", seq=0, event="saga_started", status=SagaStatus.STARTED):
    return Transition(saga_id=saga_id, seq=seq, at=float(seq), event=event, status=status)


class TestJournalContract:
    def test_create_then_load(self, journal):
        assert journal.create(rec(), tr())
        assert journal.load("s1") == rec()
        assert journal.load("missing") is None
        assert [t.event for t in journal.history("s1")] == ["saga_started"]

    def test_create_twice_keeps_the_first(self, journal):
        assert journal.create(rec(), tr())
        other = rec().model_copy(update={"input": {"a": 2}})
        assert not journal.create(other, tr())
        assert journal.load("s1").input == {"a": 1}
        assert len(journal.history("s1")) == 1

    def test_create_many_creates_the_new_and_keeps_what_exists(self, journal):
        assert journal.create(rec("s1"), tr("s1"))
        pairs = [(rec(f"s{i}", created=float(i)), tr(f"s{i}")) for i in range(1, 5)]
        pairs.append((rec("s2").model_copy(update={"input": {"a": 9}}), tr("s2")))  # again
        assert journal.create_many(pairs) == [False, True, True, True, False]
        assert [journal.load(f"s{i}").created_at for i in range(1, 5)] == [1.0, 2.0, 3.0, 4.0]
        assert journal.load("s2").input == {"a": 1}  # the first of the batch is kept
        assert all(len(journal.history(f"s{i}")) == 1 for i in range(1, 5))
        assert journal.create_many([]) == []

    def test_create_async_creates_once_also_when_raced(self, journal):
        async def both():
            return await asyncio.gather(
                *(journal.create_async(rec(f"a{i % 3}"), tr(f"a{i % 3}")) for i in range(9)))

        created = asyncio.run(both())
        assert sorted(created) == [False] * 6 + [True] * 3
        assert {journal.load(f"a{i}").saga_id for i in range(3)} == {"a0", "a1", "a2"}
        assert all(len(journal.history(f"a{i}")) == 1 for i in range(3))

    def test_commit_appends_and_replaces_atomically(self, journal):
        journal.create(rec(), tr())
        nxt = rec(seq=1, status=SagaStatus.PENDING).model_copy(update={"data": {"x": [1, "y"]}})
        journal.commit(nxt, tr(seq=1, event="action_sent", status=SagaStatus.PENDING))
        assert journal.load("s1") == nxt
        assert [t.seq for t in journal.history("s1")] == [0, 1]

    def test_several_transitions_commit_together(self, journal):
        journal.create(rec(), tr())
        journal.commit(rec(seq=2, status=SagaStatus.PENDING), tr(seq=1, event="resumed"),
                       tr(seq=2, event="action_sent", status=SagaStatus.PENDING))
        assert [t.event for t in journal.history("s1")] == [
            "saga_started", "resumed", "action_sent"]
        asyncio.run(journal.write(rec(seq=4, status=SagaStatus.PENDING),
                                  tr(seq=3, event="step_succeeded"),
                                  tr(seq=4, event="action_sent")))
        assert journal.load("s1").seq == 4 and len(journal.history("s1")) == 5

    def test_commit_with_a_stale_seq_is_refused_and_changes_nothing(self, journal):
        journal.create(rec(), tr())
        journal.commit(rec(seq=1, status=SagaStatus.PENDING), tr(seq=1))
        with pytest.raises(JournalConflictError):
            journal.commit(rec(seq=1, status=SagaStatus.COMPENSATING), tr(seq=1))
        with pytest.raises(JournalConflictError):
            journal.commit(rec(seq=3), tr(seq=3))
        with pytest.raises(JournalConflictError):
            journal.commit(rec("unknown", seq=1), tr("unknown", seq=1))
        assert journal.load("s1").status is SagaStatus.PENDING
        assert len(journal.history("s1")) == 2

    def test_query_filters_and_pages(self, journal):
        for i in range(5):
            journal.create(rec(f"s{i}", created=float(i), saga_type="a" if i % 2 else "b",
                               placement="hosted" if i == 4 else "dedicated"), tr(f"s{i}"))
        journal.commit(rec("s3", seq=1, status=SagaStatus.COMPLETED, created=3.0, saga_type="a"),
                       tr("s3", 1))

        ids = lambda rs: [r.saga_id for r in rs]  # noqa: E731
        assert ids(journal.query()) == ["s0", "s1", "s2", "s3", "s4"]
        assert ids(journal.query(statuses=[SagaStatus.COMPLETED])) == ["s3"]
        assert ids(journal.query(saga_type="a")) == ["s1", "s3"]
        assert ids(journal.query(since=1.0, until=3.0)) == ["s1", "s2"]
        assert ids(journal.query(limit=2, offset=1)) == ["s1", "s2"]
        assert ids(journal.query(limit=2, newest_first=True)) == ["s4", "s3"]
        assert ids(journal.query(statuses=[])) == []
        assert ids(journal.query(updated_since=2.5)) == ["s3", "s4"]
        assert ids(journal.non_terminal()) == ["s0", "s1", "s2", "s4"]
        assert ids(journal.non_terminal(placement="hosted")) == ["s4"]
        assert ids(journal.query(placement="dedicated", saga_type="a")) == ["s1", "s3"]
        assert journal.counts()["STARTED"] == 4 and journal.counts()["COMPLETED"] == 1
        assert journal.counts()["STUCK"] == 0

    def test_query_by_definition_version_and_id_prefix(self, journal):
        for i, (saga_id, version) in enumerate([("ab-1", 1), ("ab-2", 2), ("ac-3", 2),
                                               ("b%_4", 1)]):
            journal.create(rec(saga_id, created=float(i)).model_copy(
                update={"version": version}), tr(saga_id))
        ids = lambda **kw: [r.saga_id for r in journal.query(newest_first=True, **kw)]  # noqa: E731
        assert ids(version=2) == ["ac-3", "ab-2"]
        assert ids(id_prefix="ab-") == ["ab-2", "ab-1"]
        assert ids(id_prefix="ab-2") == ["ab-2"]  # an exact id is its own prefix
        assert ids(id_prefix="b%") == ["b%_4"]  # no wildcard in a prefix
        assert ids(id_prefix="a", version=1) == ["ab-1"]
        assert ids(id_prefix="zz") == []

    def test_counts_by_type_and_activity_over_time(self, journal):
        rows = [("o1", "order", SagaStatus.COMPLETED, 100.0, 130.0),
                ("o2", "order", SagaStatus.FAILED, 110.0, 250.0),
                ("o3", "order", SagaStatus.PENDING, 200.0, 200.0),
                ("t1", "trip", SagaStatus.COMPLETED, 50.0, 60.0)]  # before the window
        for saga_id, saga_type, status, created, updated in rows:
            journal.create(rec(saga_id, saga_type=saga_type, status=status, created=created)
                           .model_copy(update={"updated_at": updated}), tr(saga_id))
        assert journal.counts_by_type() == {
            "order": {"COMPLETED": 1, "FAILED": 1, "PENDING": 1}, "trip": {"COMPLETED": 1}}
        seen = journal.activity(since=100.0, bucket_s=60.0, buckets=3)
        # starts at 100, 110 (bucket 0), 200 (1); ends at 130 (0), 250 (2); t1 is older
        assert seen == {"since": 100.0, "bucket_s": 60.0, "starts": [2, 1, 0],
                        "ends": [1, 0, 1]}

    def test_write_groups_commits_and_fails_only_the_conflicting_one(self, journal):
        for i in range(50):
            journal.create(rec(f"s{i}"), tr(f"s{i}"))

        async def go():
            writes = [journal.write(rec(f"s{i}", seq=1, status=SagaStatus.PENDING),
                                    tr(f"s{i}", 1)) for i in range(50)]
            stale = journal.write(rec("s7", seq=9), tr("s7", 9))
            return await asyncio.gather(*writes, stale, return_exceptions=True)

        results = asyncio.run(go())
        assert results[:50] == [None] * 50
        assert isinstance(results[50], JournalConflictError)
        assert all(journal.load(f"s{i}").status is SagaStatus.PENDING for i in range(50))
        assert [t.seq for t in journal.history("s7")] == [0, 1]

    def test_signals_are_kept_once_per_id_oldest_first(self, journal):
        def sig(signal_id, at, name="approval"):
            return Signal(saga_id="s1", signal_id=signal_id, name=name,
                          payload={"by": signal_id}, at=at)

        assert journal.signals("s1") == []
        assert journal.put_signal(sig("b", 2.0))
        assert journal.put_signal(sig("a", 1.0, "webhook"))
        assert not journal.put_signal(sig("b", 3.0))  # same id: the first is kept
        kept = journal.signals("s1")
        assert [(s.signal_id, s.name, s.at) for s in kept] == [("a", "webhook", 1.0),
                                                               ("b", "approval", 2.0)]
        assert kept[1].payload == {"by": "b"} and journal.signals("other") == []


def test_sqlite_survives_reopening(tmp_path):
    url = f"sqlite:///{tmp_path}/j.sqlite"
    j = open_journal(url)
    j.create(rec(), tr())
    j.close()
    assert open_journal(url).load("s1") == rec()


def test_sqlite_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "j.sqlite"
    open_journal(f"sqlite:///{path}").close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="newer than this saga_actors"):
        open_journal(f"sqlite:///{path}")


def test_sqlite_refuses_a_corrupt_file(tmp_path):
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="corrupt or not an SQLite file"):
        open_journal(f"sqlite:///{path}")


@pytest.mark.parametrize("url", ["nope", "ftp://x", "sqlite://relative-without-slash"])
def test_bad_urls_are_clear_errors(url):
    with pytest.raises(JournalError):
        open_journal(url)
