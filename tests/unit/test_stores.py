"""Participant stores: the SQL a handler writes once runs on SQLite and PostgreSQL; a
PostgreSQL store that is someone else's, newer, or out of reach is refused, and says so."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from saga_actors import Participant, ParticipantStoreError, StepContext, action
from saga_actors.participant.stores import _pg_sql, open_store, participant_store_url


def test_placeholders_become_psycopgs_outside_quotes_only():
    assert _pg_sql("SELECT a FROM t WHERE b=? AND c=?", False) == \
        "SELECT a FROM t WHERE b=%s AND c=%s"
    assert _pg_sql("SELECT '?', \"q?\" , x::int FROM t WHERE y LIKE 'a%' AND z=?", False) == \
        "SELECT '?', \"q?\" , x::int FROM t WHERE y LIKE 'a%%' AND z=%s"
    assert _pg_sql("UPDATE t SET n = n % 7 WHERE id = :id AND k = 'it''s :not'", True) == \
        "UPDATE t SET n = n %% 7 WHERE id = %(id)s AND k = 'it''s :not'"


def test_a_runtimes_store_url_gives_each_participant_its_schema():
    assert participant_store_url("postgresql://u@h:5/db", "payment") == \
        "postgresql://u@h:5/db?schema=participant_payment"
    assert participant_store_url("postgresql://u@h:5/db?prefix=shop_", "payment") == \
        "postgresql://u@h:5/db?schema=shop_payment"


class Ledger(Participant):
    name = "ledger"

    def setup(self, db):
        db.execute("CREATE TABLE IF NOT EXISTS entries (id TEXT PRIMARY KEY, cents INTEGER, "
                   "note TEXT, rate DOUBLE PRECISION)")

    @action
    def post(self, ctx: StepContext) -> dict:
        ctx.db.execute("INSERT INTO entries VALUES (:id, :cents, :note, :rate) "
                       "ON CONFLICT DO NOTHING",
                       {"id": ctx.saga_id, "cents": ctx.data["cents"], "note": "50% off?",
                        "rate": 0.5})
        n = ctx.db.execute("SELECT COUNT(*) FROM entries WHERE note LIKE '50%'").fetchone()[0]
        return {"entries": n}


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite"
    return f"{request.getfixturevalue('pg_database')}?schema=l_{uuid.uuid4().hex[:8]}"


def test_named_parameters_and_percent_signs_run_on_both(location):
    import asyncio

    from saga_actors.model.messages import StepRequest

    p = Ledger(store=location)
    reply = asyncio.run(p.handle(StepRequest(saga_id="s1", saga_type="t", step="post",
                                             kind="action", method="post", attempt=1,
                                             data={"cents": 500})))
    assert reply.ok, reply.error
    assert reply.output == {"entries": 1}
    assert p.db.execute("SELECT cents, note, rate FROM entries").fetchall() == \
        [(500, "50% off?", 0.5)]
    p.db.close()


def test_without_a_schema_the_store_is_the_participants_name(pg_database):
    p = Ledger(store=pg_database)
    assert p.store.schema == "ledger" and "schema=ledger" in p.store_path
    p.db.close()

    class MixedCase(Ledger):
        name = "LedgerEU"

    q = MixedCase(store=pg_database)  # PostgreSQL folds the name: one schema, found again
    assert q.store.schema == "ledgereu" and "entries" in q.store.tables(q.db)
    q.db.close()


def test_a_postgres_schema_of_another_application_or_a_newer_version_is_refused(pg_database):
    schema = f"crm_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
        db.execute(f"CREATE TABLE {schema}.customers (id TEXT)")
    with pytest.raises(ParticipantStoreError, match="not a saga_actors participant store"):
        Ledger(store=f"{pg_database}?schema={schema}")

    url = f"{pg_database}?schema=l_{uuid.uuid4().hex[:8]}"
    Ledger(store=url).db.close()
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute(f"UPDATE {url.split('schema=')[1]}.saga_store_meta SET value='9'")
    with pytest.raises(ParticipantStoreError, match="schema version 9 is newer"):
        Ledger(store=url)
    with pytest.raises(ParticipantStoreError, match="not a plain SQL name"):
        Ledger(store=f"{pg_database}?schema=a;drop")


def test_an_unreachable_server_or_a_wrong_user_is_a_clear_error_within_seconds(pg_database):
    began = time.monotonic()
    with pytest.raises(ParticipantStoreError, match="cannot reach or log in"):
        Ledger(store="postgresql://postgres@127.0.0.1:1/nowhere")
    db_name = pg_database.rsplit("/", 1)[1]
    with pytest.raises(ParticipantStoreError, match="cannot reach or log in"):
        Ledger(store=f"postgresql://nobody_here@127.0.0.1:5432/{db_name}")
    assert time.monotonic() - began < 10


def test_an_offline_reader_opens_a_store_read_only(location):
    Ledger(store=location).db.close()
    reader = open_store(location, read_only=True).connect()
    assert reader.execute("SELECT COUNT(*) FROM saga_effects").fetchone()[0] == 0
    with pytest.raises(Exception):  # noqa: B017 (sqlite3 and psycopg raise their own)
        reader.execute("DELETE FROM entries")
    reader.close()


def test_a_participant_whose_server_connections_were_dropped_waits_and_applies_once(
        pg_database):
    """Every connection of the store killed (as a server restart does): the next effect
    is applied once, on a new connection, and the dropped one is not the step's failure."""
    import asyncio

    from saga_actors.model.messages import StepRequest

    p = Ledger(store=f"{pg_database}?schema=l_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(pg_database, autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                               ).fetchone()[0]
    assert killed >= 1
    request = StepRequest(saga_id="s1", saga_type="t", step="post", kind="action",
                          method="post", attempt=1, data={"cents": 7})
    reply = asyncio.run(p.handle(request))
    assert reply.ok, reply.error
    again = asyncio.run(p.handle(request))
    assert again.replayed and again.output == reply.output
    assert p.effect_counts() == {"post": 1}
    p.db.close()


def test_a_runtime_with_an_unreachable_store_url_refuses_before_anything_is_made(tmp_path):
    from saga_actors import ConfigError, SagaRuntime

    began = time.monotonic()
    with pytest.raises(ParticipantStoreError, match="cannot reach or log in"):
        SagaRuntime(data_dir=str(tmp_path / "d"), store_url="postgresql://postgres@127.0.0.1:1/x")
    assert time.monotonic() - began < 10
    with pytest.raises(ConfigError, match="store_url"):
        SagaRuntime(data_dir=str(tmp_path / "d"), store_url="mysql://h/db")
    assert not (tmp_path / "d").exists()  # no journal, no folder
