"""Where stores live: the URL helpers the configuration and the stores share. No Ray."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def participant_store_url(store_url: str, name: str) -> str:
    """The store of participant ``name`` under a runtime's ``store_url``: the same server
    and database, in schema ``<prefix><name>`` (``?prefix=``, default ``participant_``)."""
    parts = urlsplit(store_url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", "participant_")
    query["schema"] = f"{prefix}{name}"
    return urlunsplit(parts._replace(query=urlencode(query)))


def stores_beside(journal_url: str) -> str:
    """A ``store_url`` in the PostgreSQL database of ``journal_url``: each participant's
    schema is named after the journal's (``<journal schema>_<participant>``)."""
    parts = urlsplit(journal_url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", None)
    if schema:
        query["prefix"] = f"{schema}_"
    return urlunsplit(parts._replace(query=urlencode(query)))
