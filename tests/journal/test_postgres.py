"""The PostgreSQL journal's own cases: what the contract suite cannot say for every
backend. Each is a clear JournalError within seconds, and the server is left as it was."""

from __future__ import annotations

import time

import psycopg
import pytest

from saga_actors import JournalError, SagaStatus
from saga_actors.journal import open_journal
from saga_actors.journal.base import SCHEMA_VERSION
from tests.conftest import PG_SERVER
from tests.journal.test_contract import rec, tr


def test_a_journal_survives_reopening_and_two_processes_share_it(pg_url):
    first = open_journal(pg_url)
    assert first.create(rec(), tr())
    second = open_journal(pg_url, create=False)  # as an actor would
    assert second.load("s1") == rec()
    second.commit(rec(seq=1, status=SagaStatus.PENDING), tr(seq=1))
    assert first.load("s1").status is SagaStatus.PENDING
    first.close()
    second.close()


def test_a_newer_schema_or_someone_elses_tables_are_refused_unchanged(pg_url, pg_database):
    journal = open_journal(pg_url)
    journal.close()
    schema = pg_url.split("schema=")[1]
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'schema_version'",
                   (str(SCHEMA_VERSION + 1),))
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        open_journal(pg_url)
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute("CREATE SCHEMA crm")
        db.execute("CREATE TABLE crm.customers (id TEXT)")
    other = pg_database + "?schema=crm"
    with pytest.raises(JournalError, match="'crm' holds tables \\['customers'\\] but is not"):
        open_journal(other)
    with psycopg.connect(pg_database, autocommit=True) as db:
        assert db.execute("SELECT table_name FROM information_schema.tables "
                          "WHERE table_schema = 'crm'").fetchall() == [("customers",)]


def test_tools_and_actors_never_create_a_journal_and_read_only_never_writes(pg_url):
    with pytest.raises(JournalError, match="no journal in schema"):
        open_journal(pg_url, create=False)
    with pytest.raises(JournalError, match="no journal in schema"):
        open_journal(pg_url, read_only=True)
    open_journal(pg_url).create(rec(), tr())
    reader = open_journal(pg_url, read_only=True)
    assert reader.load("s1") == rec()
    with pytest.raises(JournalError, match="read-only"):
        reader.create(rec("s2"), tr("s2"))
    reader.close()


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://postgres@127.0.0.1:1/x", "cannot reach or log in"),
    (f"{PG_SERVER.replace('postgres@', 'nobody@')}/postgres", "cannot reach or log in"),
    (f"{PG_SERVER}/no_such_database", "cannot reach or log in.*no_such_database"),
    (f"{PG_SERVER}/postgres?schema=bad-name", "is not a plain SQL name"),
])
def test_bad_servers_and_urls_are_clear_errors_within_seconds(url, message, pg_database):
    started = time.monotonic()
    with pytest.raises(JournalError, match=message):
        open_journal(url)
    assert time.monotonic() - started < 10


def test_the_cli_reads_a_postgres_journal_offline(pg_url):
    """`saga-actors journal --journal URL list/show`, with no cluster anywhere."""
    import json

    from click.testing import CliRunner

    from saga_actors.ops.cli import main

    journal = open_journal(pg_url)
    assert journal.create(rec(), tr())
    journal.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["journal", "--journal", pg_url, "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [e["saga_id"] for e in json.loads(listed.output)] == ["s1"]
    shown = runner.invoke(main, ["journal", "--journal", pg_url, "show", "s1", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["saga_id"] == "s1"
    assert json.loads(shown.output)["version"] == 1
    human = runner.invoke(main, ["journal", "--journal", pg_url, "show", "s1"])
    assert human.exit_code == 0 and "v1" in human.output
    missing = runner.invoke(main, ["journal", "--journal", pg_url.replace("schema=", "schema=x"),
                                   "list"])
    assert missing.exit_code != 0 and "no journal in schema" in missing.output
