"""The console's HTML, piece by piece: escaping (everything a saga holds is text, never
markup), the page frame, status badges, tables and the starts-and-ends chart."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from saga_actors.model.state import SagaStatus

STATUSES = [s.value for s in SagaStatus]


def e(value: Any) -> str:
    """``value`` as HTML text: nothing in it is markup."""
    return "" if value is None else escape(str(value), quote=True)


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def quoted(saga_id: str) -> str:
    """A saga id in a URL path (a child's id holds a ``/``, kept as one)."""
    return quote(saga_id, safe="/")


def saga_href(base: str, saga_id: str, **query: Any) -> str:
    tail = f"?{urlencode(query)}" if query else ""
    return f"{base}/sagas/{quoted(saga_id)}{tail}"


def saga_link(base: str, saga_id: str) -> str:
    return f'<a class="saga-link" href="{e(saga_href(base, saga_id))}">{e(saga_id)}</a>'


def badge(status: str) -> str:
    return f'<span class="status s-{e(status)}" data-status="{e(status)}">{e(status)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "",
          empty: str = "nothing to show") -> str:
    """A table of cells that are already HTML (each made with :func:`e` or a helper)."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def flash(message: tuple[str, str] | None) -> str:
    if message is None:
        return ""
    kind, text = message
    return f'<div class="flash {e(kind)}" role="status" data-flash="{e(kind)}">{e(text)}</div>'


def frame(base: str, title: str, body: str, *, active: str, signed_in: bool,
          can_sign_in: bool) -> str:
    """The whole page: head (the console's own style and script), navigation, body."""
    nav = "".join(
        f'<a href="{e(base)}{href}"{" class=active" if key == active else ""}>{e(label)}</a>'
        for key, href, label in (("overview", "/", "Overview"), ("list", "/sagas", "Sagas")))
    if signed_in:
        who = (f'<form method="post" action="{e(base)}/logout" class="inline">'
               '<button type="submit">Sign out</button></form>')
    else:
        who = f'<a href="{e(base)}/login">Sign in</a>' if can_sign_in else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · saga console</title>"
        f'<link rel="stylesheet" href="{e(base)}/static/console.css">'
        f'<script defer src="{e(base)}/static/console.js"></script></head><body>'
        f'<header><span class="brand">saga_actors</span><nav>{nav}</nav>'
        f'<span class="who">{who}</span></header><main>{body}</main></body></html>'
    )


def activity_chart(activity: dict[str, Any]) -> str:
    """Starts and ends per interval over the window, as bars (an inline SVG, no script)."""
    starts, ends = activity["starts"], activity["ends"]
    n, top = len(starts), max([1, *starts, *ends])
    bar, gap, h = 5, 2, 90
    width = n * (2 * bar + gap)
    bars = []
    for i, (s, d) in enumerate(zip(starts, ends, strict=True)):
        x = i * (2 * bar + gap)
        minutes = (n - i) * activity["bucket_s"] / 60
        for j, (value, cls) in enumerate(((s, "start"), (d, "end"))):
            if value:
                bh = max(1.0, h * value / top)
                bars.append(f'<rect class="{cls}" x="{x + j * bar}" y="{h - bh:.1f}" '
                            f'width="{bar}" height="{bh:.1f}"><title>{value} {cls}s, '
                            f'{minutes:g} min ago</title></rect>')
    window = n * activity["bucket_s"] / 60
    return (f'<svg class="chart" role="img" viewBox="0 0 {width} {h + 14}" '
            f'width="{width}" height="{h + 14}" aria-label="starts and ends per interval">'
            f'{"".join(bars)}<text x="0" y="{h + 12}">-{window:g} min</text>'
            f'<text x="{width}" y="{h + 12}" text-anchor="end">now</text></svg>'
            f'<p class="legend"><span class="key start"></span> started '
            f'({sum(starts)}) <span class="key end"></span> ended ({sum(ends)}), per '
            f'{activity["bucket_s"]:g} s</p>')
