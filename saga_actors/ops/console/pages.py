"""The console's pages as HTML strings, from what the registry answers (the same dicts the
CLI prints). Every value from a saga goes through :func:`layout.e`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from saga_actors.model.records import Expect, awaited_apart
from saga_actors.ops.console.layout import (
    STATUSES,
    activity_chart,
    badge,
    e,
    quoted,
    saga_link,
    table,
    when,
)
from saga_actors.ops.timeline import render_svg

FINAL = ("COMPLETED", "FAILED")  # a live page stops refreshing once the saga is one of these


def overview_live(base: str, ov: dict[str, Any]) -> str:
    """The overview's refreshing part: STUCK sagas first, counts, the chart, by type."""
    stuck = ov["stuck"]
    stuck_rows = [[saga_link(base, s["saga_id"]), e(s["saga_type"]), e(when(s["updated_at"])),
                   f'<span class="error">{e(s["error"])}</span>'] for s in stuck]
    more = (f'<p>{ov["stuck_total"] - len(stuck)} more: '
            f'<a href="{e(base)}/sagas?status=STUCK">all STUCK sagas</a></p>'
            if ov["stuck_total"] > len(stuck) else "")
    counts = "".join(
        f'<a class="count" data-status="{e(s)}" href="{e(base)}/sagas?status={e(s)}">'
        f'<b data-count="{e(s)}">{ov["counts"].get(s, 0)}</b>{badge(s)}</a>' for s in STATUSES)
    types = sorted(ov["by_type"].items())
    type_rows = [[f'<a href="{e(base)}/sagas?{e(urlencode({"type": t}))}">{e(t)}</a>',
                  *(e(by.get(s, 0)) for s in STATUSES), e(sum(by.values()))]
                 for t, by in types]
    return (
        f'<section class="stuck"><h2>STUCK ({ov["stuck_total"]})</h2>'
        + table(["saga", "type", "stuck since", "reason"], stuck_rows,
                empty="no saga is STUCK") + more + "</section>"
        + f'<section><h2>By status</h2><div class="counts">{counts}</div>'
        f'<p class="total">{sum(ov["counts"].values())} sagas in all</p></section>'
        + f'<section><h2>Starts and ends, last hour</h2>{activity_chart(ov["activity"])}'
        "</section>"
        + "<section><h2>By saga type</h2>"
        + table(["type", *STATUSES, "all"], type_rows, cls="by-type", empty="no sagas yet")
        + "</section>")


def overview(live: str, base: str, every_s: float, *, tag: str) -> str:
    """The overview page around its live part (``live``: :func:`overview_live`)."""
    return (f'<h1>Overview</h1><div id="live" data-live="{e(base)}/live/overview" '
            f'data-every="{int(every_s * 1000)}" data-tag="{e(tag)}">{live}</div>')


def saga_list(base: str, rows: list[dict[str, Any]], filters: dict[str, Any], *,
              page: int, more: bool) -> str:
    """The filter form, one page of sagas (newest first) and links to the pages around."""
    def field(name: str) -> str:
        return e(filters.get(name) or "")

    status_opts = "".join(
        f'<option value="{e(s)}"{" selected" if filters.get("status") == s else ""}>{e(s)}'
        "</option>" for s in ["", *STATUSES])
    within_opts = "".join(
        f'<option value="{v}"{" selected" if str(filters.get("within") or "") == v else ""}>'
        f"{label}</option>" for v, label in (("", "any time"), ("900", "last 15 min"),
                                             ("3600", "last hour"), ("86400", "last day"),
                                             ("604800", "last week")))
    form = (
        f'<form class="filters" method="get" action="{e(base)}/sagas">'
        f'<label>id or prefix <input name="q" value="{field("q")}" size="24"></label>'
        f'<label>status <select name="status">{status_opts}</select></label>'
        f'<label>type <input name="type" value="{field("type")}" size="16"></label>'
        f'<label>version <input name="version" value="{field("version")}" size="3" '
        'inputmode="numeric"></label>'
        f'<label>created <select name="within">{within_opts}</select></label>'
        f'<label>from <input type="datetime-local" name="since" value="{field("since")}" '
        'step="1"></label>'
        f'<label>to <input type="datetime-local" name="until" value="{field("until")}" '
        'step="1"></label><button type="submit">Filter</button></form>')
    body = [[saga_link(base, r["saga_id"]), e(r["saga_type"]), badge(r["status"]),
             e(r["current_step"] or "-"), e(r["attempt"]), e(when(r["created_at"])),
             e(when(r["finished_at"] or r["updated_at"])),
             f'<span class="error">{e((r["error"] or "")[:160])}</span>'] for r in rows]
    kept = {k: v for k, v in filters.items() if v not in (None, "")}
    pager = []
    if page > 0:
        pager.append(f'<a rel="prev" href="{e(_page_href(base, kept, page - 1))}">newer</a>')
    if more:
        pager.append(f'<a rel="next" href="{e(_page_href(base, kept, page + 1))}">older</a>')
    return (f"<h1>Sagas</h1>{form}"
            + table(["saga", "type", "status", "step", "attempt", "created", "updated",
                     "error"], body, cls="sagas", empty="no saga matches")
            + f'<p class="pager">page {page + 1} {" ".join(pager)}</p>')


def _page_href(base: str, filters: dict[str, Any], page: int) -> str:
    return f"{base}/sagas?{urlencode({**filters, 'page': page})}"


def saga_live(base: str, info: dict[str, Any]) -> str:
    """A saga's refreshing part: where it stands, steps, timeline, event chain, history."""
    facts = [
        ("status", badge(info["status"])),
        ("type", f'{e(info["saga_type"])} v{e(info["version"])}'),
        ("placement", e(info["placement"])), ("runs in", e(info["runner"])),
        ("parent", saga_link(base, info["parent_id"]) if info["parent_id"] else "-"),
        ("children", ", ".join(saga_link(base, c) for c in info["children"]) or "-"),
        ("current step", e(info["current_step"] or "-")),
        ("attempt", e(info["attempt"])), ("restarts", e(info["restarts"])),
        ("waiting for", _waiting(info)),
        ("created", e(when(info["created_at"]))), ("updated", e(when(info["updated_at"]))),
        ("finished", e(when(info["finished_at"]))),
        ("error", f'<span class="error">{e(info["error"] or "-")}</span>'),
    ]
    dl = "".join(f"<dt>{e(k)}</dt><dd data-fact=\"{e(k)}\">{v}</dd>" for k, v in facts)
    steps = [[e(s["step"]), e(s["phase"]), f'<span class="outcome" data-outcome='
              f'"{e(s["outcome"])}">{e(s["outcome"])}</span>', e(s["attempts"]),
              e(when(s["started_at"])), e(s.get("duration_s", "-")),
              f'<span class="error">{e(s["last_error"] or "")}</span>'] for s in info["steps"]]
    history = [[e(t["seq"]), e(when(t["at"])), e(t["event"]), e(t.get("step") or ""),
                e(t["status"]), f'<code>{e(json.dumps(t.get("detail") or {}))}</code>']
               for t in info["history"]]
    parts = [f'<dl class="facts">{dl}</dl>', "<h2>Steps</h2>",
             table(["step", "phase", "outcome", "attempts", "first sent", "took (s)",
                    "last error"], steps, cls="steps", empty="no step has run yet"),
             f'<h2>Timeline</h2><div class="timeline">{render_svg(info)}</div>']
    if info["placement"] == "choreography":
        chain = [[e(when(ev["at"])), e(ev["type"]), e(ev.get("producer") or "-"),
                  e(ev.get("consumer") or "-"), e(ev.get("causation_id") or "-"), e(ev["id"])]
                 for ev in info["events"]]
        parts += ["<h2>Event chain</h2>",
                  table(["time", "event", "producer", "consumer", "cause", "event id"],
                        chain, cls="events", empty="no event yet")]
    parts += ["<h2>History</h2>", table(["seq", "time", "event", "step", "status", "detail"],
                                        history, cls="history")]
    return "".join(parts)


def _waiting(info: dict[str, Any]) -> str:
    """A signal (from an orchestrated wait step), a reaction's event, or its definition."""
    if info["status"] in FINAL:
        return "-"
    found = [f"signal {w['signal']!r} (step {w['step']}, until {when(w['until'])})"
             for w in info.get("signals_awaited", ())]
    expects = [Expect(**x) for x in info.get("expects", ())]
    running = awaited_apart(info.get("awaiting"), expects)
    if running:  # (since when, not for how long: the part is redrawn on news)
        found.append(f"{running} (since {when(info['updated_at'])})")
    found += [f"{x.text()} (since {when(x.since)})" for x in expects]
    if info.get("waiting_for"):
        found.append(f"its definition: {info['waiting_for']}")
    return "; ".join(f'<span class="waiting">{e(w)}</span>' for w in found) or "-"


def saga_page(base: str, info: dict[str, Any], *, every_s: float, tag: str, actions: str,
              saga_input: str) -> str:
    saga_id = info["saga_id"]
    final = info["status"] in FINAL
    live = (f'data-live="{e(base)}/live/sagas/{e(quoted(saga_id))}" '
            f'data-every="{int(every_s * 1000)}" data-tag="{e(tag)}"' if not final
            else 'data-final="1"')
    return (f'<h1>Saga <code class="saga-id">{e(saga_id)}</code></h1>'
            f'<div id="live" {live}>{saga_live(base, info)}</div>'
            f"{actions}{saga_input}")
