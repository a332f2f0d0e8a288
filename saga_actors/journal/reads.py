"""What the SQL journal backends read beyond one saga: the one query they filter records
with, and the summaries an operator's overview shows (counts by saga type, starts and ends
over time). Each backend names its dialect; the SQL is written once. No Ray."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from saga_actors.model.state import SagaStatus


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL backends' reads."""

    mark: str  # a placeholder: ``?`` or ``%s``
    no_limit: Any  # the LIMIT meaning none
    version: str  # the record's definition version, as an integer expression
    bucket: str  # ``{col}``'s bucket number: ({col} - since) / width, rounded down
    input_field: str  # a field of the record's input as text; its one argument: field_arg
    field_arg: Callable[[str], str]  # the field's name -> that argument


SQLITE = Dialect("?", -1, "json_extract(record, '$.version')",
                 "CAST(({col} - ?) / ? AS INTEGER)",  # (col >= since: truncation is floor)
                 "CAST(json_extract(record, ?) AS TEXT)", lambda f: f'$.input."{f}"')
POSTGRES = Dialect("%s", None, "CAST(record::json->>'version' AS INTEGER)",
                   "CAST(FLOOR(({col} - %s) / %s) AS INTEGER)",
                   "record::json->'input'->>%s", lambda f: f)


def records_query(
    table: str, dialect: Dialect, *,
    statuses: Iterable[SagaStatus] | None, saga_type: str | None, version: int | None,
    id_prefix: str | None, placement: str | None, since: float | None, until: float | None,
    updated_since: float | None, limit: int | None, offset: int, newest_first: bool,
) -> tuple[str, list[Any]] | None:
    """:meth:`Journal.query` as SQL and its arguments; None when no status is asked for."""
    mark = dialect.mark
    where, args = [], []
    if statuses is not None:
        values = [SagaStatus(s).value for s in statuses]
        if not values:
            return None
        where.append(f"status IN ({', '.join([mark] * len(values))})")
        args += values
    for condition, value in (("saga_type =", saga_type), (f"{dialect.version} =", version),
                             ("placement =", placement), ("created_at >=", since),
                             ("created_at <", until), ("updated_at >=", updated_since)):
        if value is not None:
            where.append(f"{condition} {mark}")
            args.append(value)
    if id_prefix:
        where.append(f"substr(saga_id, 1, {mark}) = {mark}")
        args += [len(id_prefix), id_prefix]
    text = f"SELECT record FROM {table}"
    if where:
        text += " WHERE " + " AND ".join(where)
    order = "DESC" if newest_first else "ASC"
    text += f" ORDER BY created_at {order}, saga_id {order} LIMIT {mark} OFFSET {mark}"
    return text, [*args, dialect.no_limit if limit is None else limit, offset]


def correlated(read: Callable[[str, tuple], list[tuple]], table: str, dialect: Dialect, *,
               saga_type: str, field: str, value: Any, limit: int) -> list[str]:
    """:meth:`Journal.correlated`: the records (JSON) of the sagas of ``saga_type`` whose
    input's ``field`` is ``value`` (compared as text), newest first."""
    mark = dialect.mark
    return [row[0] for row in read(
        f"SELECT record FROM {table} WHERE saga_type = {mark} AND "
        f"{dialect.input_field} = {mark} ORDER BY created_at DESC LIMIT {mark}",
        (saga_type, dialect.field_arg(field), as_text(value), limit))]


def as_text(value: Any) -> str:
    """A correlation value as both backends give a JSON scalar as text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def counts_by_type(read: Callable[[str, tuple], list[tuple]], table: str) -> dict[str, dict]:
    """Sagas by type, then by status (the statuses a type has)."""
    out: dict[str, dict[str, int]] = {}
    for saga_type, status, n in read(
            f"SELECT saga_type, status, COUNT(*) FROM {table} GROUP BY saga_type, status", ()):
        out.setdefault(saga_type, {})[status] = n
    return out


def activity(read: Callable[[str, tuple], list[tuple]], table: str, dialect: Dialect, *,
             since: float, bucket_s: float, buckets: int) -> dict[str, Any]:
    """How many sagas started, and how many ended (COMPLETED or FAILED), in each of
    ``buckets`` intervals of ``bucket_s`` from ``since``."""
    mark, ended = dialect.mark, [SagaStatus.COMPLETED.value, SagaStatus.FAILED.value]
    series = {}
    for name, col, counted in (
            ("starts", "created_at", "COUNT(*)"),
            # (the status is tested per row, not in WHERE: there SQLite would pick the
            # status index and count every finished saga ever, not the last hour's)
            ("ends", "updated_at", f"SUM(CASE WHEN status IN ({', '.join([mark] * 2)}) "
                                   "THEN 1 ELSE 0 END)")):
        bucket = dialect.bucket.format(col=col)
        args = (since, bucket_s, *(ended if name == "ends" else ()), since)
        rows = read(f"SELECT {bucket} AS b, {counted} FROM {table} WHERE {col} >= {mark} "
                    "GROUP BY b", args)
        counts = [0] * buckets
        for b, n in rows:
            if 0 <= b < buckets:
                counts[b] += int(n or 0)
        series[name] = counts
    return {"since": since, "bucket_s": bucket_s, **series}
