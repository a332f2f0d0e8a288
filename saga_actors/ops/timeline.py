"""A saga's timeline as an SVG picture, drawn from what ``show`` says of it (the journal's
record and history, through :func:`saga_actors.services.registry.describe`), so it works offline.

An orchestrated saga gets one lane per step: each attempt, its retries and timeouts, the
pivot, the compensation, and a lane for the saga itself with its final status. A
choreographed saga gets one lane per service, with each event drawn as an arrow from the
service that published it to each one that reacts to it: a fan-out's branches leave one
event side by side, on their services' lanes, and a join is marked where the events it
waited for meet. Marks carry a class (``attempt``, ``retry``, ``timeout``, ``failed``,
``succeeded``, ``compensation``, ``pivot``, ``status``, ``event``, ``fanout``, ``join``)
and a tooltip. Hand-written SVG: no plotting library needed.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from saga_actors.model.events import TIMEOUT_ERROR_TYPES, Event

WIDTH, LABEL_W, LANE_H, TOP, RIGHT = 980, 200, 38, 56, 130
COLOURS = {
    "attempt": "#4c78a8", "retry": "#f58518", "timeout": "#e45756", "failed": "#b22222",
    "succeeded": "#54a24b", "compensation": "#8e6bbf", "pivot": "#222222",
    "event": "#4c78a8", "fanout": "#1f77b4", "join": "#d62728", "COMPLETED": "#54a24b",
    "FAILED": "#e45756", "STUCK": "#b279a2",
    "PENDING": "#4c78a8", "COMPENSATING": "#8e6bbf", "STARTED": "#999999",
}


def render_svg(info: dict[str, Any]) -> str:
    """The timeline of one saga (a ``show`` dict) as an SVG document."""
    history = info.get("history") or []
    ordinal = info.get("placement") == "choreography" and bool(info.get("events"))
    if ordinal:  # a sequence diagram: one column per event, in order
        lanes, marks = _choreography(info)
        times = [e["at"] for e in info["events"]] + [t["at"] for t in history]
        lo, hi, span = 0.0, float(len(info["events"])), float(len(info["events"]))
    else:
        lanes, marks = _orchestration(info, history)
        times = [m["at"] for m in marks] + [t["at"] for t in history] or [0.0]
        lo, hi = min(times), max(times)
        span = max(hi - lo, 1e-3)
    start, end = min(times), max(times)
    scale = (WIDTH - LABEL_W - RIGHT) / span

    def x(at: float) -> float:
        return round(LABEL_W + (at - lo) * scale, 1)

    def y(lane: str) -> float:
        return TOP + lanes.index(lane) * LANE_H + LANE_H / 2

    height = TOP + len(lanes) * LANE_H + 40
    title = (f"{info.get('saga_type', '?')} {info.get('saga_id', '?')}: "
             f"{info.get('status', '?')} after {end - start:.3f}s")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
           f'<title>{escape(title)}</title>',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<text x="10" y="40" fill="#666">from {_clock(start)} to {_clock(end)}</text>']
    for i, lane in enumerate(lanes):
        top = TOP + i * LANE_H
        label = lane + (" (pivot)" if lane == info.get("pivot") else "")
        out.append(f'<g class="lane" data-lane="{escape(lane)}">'
                   f'<rect x="0" y="{top}" width="{WIDTH}" height="{LANE_H}" '
                   f'fill="{"#f6f6f6" if i % 2 else "#ffffff"}"/>'
                   f'<text x="10" y="{top + LANE_H / 2 + 4}">{escape(label)}</text></g>')
    for m in marks:
        out.append(_draw(m, x, y))
    axis_y = TOP + len(lanes) * LANE_H + 16
    out.append(f'<line x1="{LABEL_W}" y1="{axis_y - 10}" x2="{WIDTH - RIGHT}" '
               f'y2="{axis_y - 10}" stroke="#999"/>')
    for k in range(5):
        at = lo + (hi - lo) * k / 4
        label = f"event {at:g}" if ordinal else f"+{at - start:.3f}s"
        if not ordinal or at == int(at):
            out.append(f'<text x="{x(at)}" y="{axis_y + 6}" text-anchor="middle" '
                       f'fill="#666">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _orchestration(info: dict[str, Any],
                   history: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    lanes = ["saga"]
    marks: list[dict[str, Any]] = []
    sent: dict[tuple[str, str], float] = {}
    for t in history:
        event, step, at, detail = Event(t["event"]), t.get("step"), t["at"], t.get("detail") or {}
        tip = f"{event.value}" + (f" {step}" if step else "") + (
            f" attempt {t['attempt']}" if t.get("attempt") else "") + (
            f": {detail['error']}" if detail.get("error") else "")
        if step and step not in lanes and event.phase is not None:
            lanes.append(step)
        phase = event.phase
        if step and event.is_sent:
            sent.setdefault((step, phase), at)
            marks.append(dict(kind="attempt" if phase == "action" else "compensation",
                              shape="dot", lane=step, at=at, tip=tip))
        elif step and event.is_attempt_failure:
            kind = ("timeout" if detail.get("error_type") in TIMEOUT_ERROR_TYPES
                    else "failed" if detail.get("final") else "retry")
            marks.append(dict(kind=kind, shape="cross", lane=step, at=at, tip=tip))
        elif step and event.is_step_success:
            kind = "succeeded" if phase == "action" else "compensation"
            marks.append(dict(kind=kind, shape="bar", lane=step,
                              start=sent.get((step, phase), at), at=at, tip=tip))
            if phase == "action" and step == info.get("pivot"):
                marks.append(dict(kind="pivot", shape="diamond", lane=step, at=at,
                                  tip=f"pivot {step} succeeded: only forward from here"))
        elif event in (Event.SAGA_STARTED, Event.CANCEL_REQUESTED, Event.COMPENSATION_STARTED,
                       Event.RESUMED, Event.ACTOR_RESTARTED, Event.INSTANCE_RESTARTED,
                       Event.RETRY_REQUESTED, Event.RESOLVED):
            marks.append(dict(kind="event", shape="tick", lane="saga", at=at, tip=tip,
                              text=event.value.replace("_", " ")))
    if history:
        marks.append(dict(kind="status", shape="badge", lane="saga", at=history[-1]["at"],
                          text=info.get("status", "?"), tip=f"final status {info.get('status')}"))
    return lanes, marks


def _choreography(info: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    lanes: list[str] = []
    marks: list[dict[str, Any]] = []
    first = info["events"][0]["at"]
    index = {e["id"]: i for i, e in enumerate(info["events"])}
    for i, e in enumerate(info["events"]):
        src = (e.get("producer") or "start").split(".")[0]
        targets = [c.split(".")[0] for c in (e.get("consumer") or "end").split(", ")]
        for lane in (src, *targets):
            if lane not in lanes:
                lanes.append(lane)
        for n, dst in enumerate(targets):  # a fan-out: one arrow per branch
            marks.append(dict(kind="fanout" if len(targets) > 1 else "event", shape="arrow",
                              lane=src, to=dst, at=i + 0.1, end=i + 0.9,
                              text=f"{e['type']} +{e['at'] - first:.3f}s" if n == 0 else "",
                              tip=f"{e['type']}: {e.get('producer') or 'start'} -> "
                              f"{e.get('consumer') or 'end'}"))
        causes = [index[c] for c in (e.get("causation_id") or "").split(",") if c in index]
        if len(causes) > 1:  # a join: where the events it waited for meet
            marks.append(dict(kind="join", shape="join", lane=src, at=i + 0.05, step=src,
                              froms=[(k + 0.9, src) for k in causes],
                              text=f"join ({len(causes)})", tip="join of "
                              + ", ".join(info["events"][k]["type"] for k in causes)
                              + f" -> {e.get('producer')}"))
    marks += _reaction_outcomes(info, lanes)
    order = ["start", *[lane for lane in lanes if lane not in ("start", "end")], "end"]
    lanes[:] = [lane for lane in order if lane in lanes]
    marks.append(dict(kind="status", shape="badge", lane=lanes[-1], at=len(info["events"]),
                      text=info.get("status", "?"), tip=f"final status {info.get('status')}"))
    return lanes, marks


# a step row's outcome (as ``show`` gives it) -> the kind of its mark
_OUTCOME_MARK = {"succeeded": "succeeded", "compensated": "compensation", "failed": "failed",
                 "in flight": "attempt"}


def _reaction_outcomes(info: dict[str, Any], lanes: list[str]) -> list[dict[str, Any]]:
    """One mark per step row of ``show`` (reaction and phase), with its outcome: where the
    event that ended it leaves its service, or, still in flight, at the end of the log."""
    index = {e["id"]: i for i, e in enumerate(info["events"])}
    ended_by = {(t.get("step"), (t.get("detail") or {}).get("phase")): t["detail"]["event_id"]
                for t in info.get("history") or []
                if t["event"] == Event.EVENT_PUBLISHED.value and t.get("step")
                and (t.get("detail") or {}).get("event_id") in index}
    marks = []
    for row in info.get("steps") or []:
        at = index.get(ended_by.get((row["step"], row["phase"])))
        event = info["events"][at if at is not None else -1]
        lane = ((event.get("producer") if at is not None else event.get("consumer"))
                or "end").split(".")[0]
        if lane not in lanes:
            lanes.append(lane)
        marks.append(dict(kind=_OUTCOME_MARK.get(row["outcome"], "attempt"), shape="dot",
                          lane=lane, step=f"{row['step']}/{row['phase']}",
                          at=at + 0.1 if at is not None else len(info["events"]),
                          tip=f"{row['step']} ({row['phase']}): {row['outcome']}"
                          + (f", {row['attempts']} attempt(s)" if row["attempts"] else "")))
    return marks


def _draw(m: dict[str, Any], x: Any, y: Any) -> str:
    kind = m["kind"]
    colour = COLOURS.get(m["text"] if kind == "status" else kind, "#333")
    cx, cy, tip = x(m["at"]), y(m["lane"]), f"<title>{escape(m['tip'])}</title>"
    step = f' data-step="{escape(m["step"])}"' if m.get("step") else ""
    open_g = f'<g class="mark {kind}" data-lane="{escape(m["lane"])}"{step}>{tip}'
    shape = m["shape"]
    if shape == "dot":
        body = f'<circle cx="{cx}" cy="{cy}" r="5" fill="{colour}"/>'
    elif shape == "cross":
        body = (f'<path d="M{cx - 5},{cy - 5}L{cx + 5},{cy + 5}M{cx - 5},{cy + 5}'
                f'L{cx + 5},{cy - 5}" stroke="{colour}" stroke-width="3"/>')
        if kind == "timeout":
            body += (f'<text x="{cx}" y="{cy - 9}" text-anchor="middle" '
                     f'fill="{colour}">timeout</text>')
    elif shape == "bar":
        x0 = x(m["start"])
        body = (f'<rect x="{x0}" y="{cy - 6}" width="{max(cx - x0, 2)}" height="12" rx="3" '
                f'fill="{colour}" opacity="0.75"/>')
    elif shape == "diamond":
        body = (f'<path d="M{cx},{cy - 9}L{cx + 9},{cy}L{cx},{cy + 9}L{cx - 9},{cy}Z" '
                f'fill="none" stroke="{colour}" stroke-width="2"/>')
    elif shape == "tick":
        body = (f'<line x1="{cx}" y1="{cy - 10}" x2="{cx}" y2="{cy + 10}" stroke="{colour}"/>'
                f'<text x="{cx + 3}" y="{cy + 14}" fill="#555" font-size="10">'
                f'{escape(m["text"])}</text>')
    elif shape == "join":
        lines = "".join(f'<line x1="{x(a)}" y1="{y(lane)}" x2="{cx}" y2="{cy}" '
                        f'stroke="{colour}" stroke-dasharray="3,2"/>' for a, lane in m["froms"])
        body = (f'{lines}<path d="M{cx},{cy - 8}L{cx + 8},{cy}L{cx},{cy + 8}L{cx - 8},{cy}Z" '
                f'fill="{colour}"/><text x="{cx}" y="{cy + 20}" text-anchor="middle" '
                f'font-size="10" fill="{colour}">{escape(m["text"])}</text>')
    elif shape == "arrow":
        x0, y0, x1, y1 = x(m["at"]), y(m["lane"]), x(m["end"]), y(m["to"])
        body = (f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="{colour}" '
                f'stroke-width="1.5"/><circle cx="{x1}" cy="{y1}" r="4" fill="{colour}"/>'
                f'<text x="{x1 - 4}" y="{y1 - 7}" font-size="10" text-anchor="end">'
                f'{escape(m["text"])}</text>')
    else:  # badge, right of the time axis
        bx = WIDTH - RIGHT + 12
        body = (f'<rect x="{bx}" y="{cy - 10}" width="{9 * len(m["text"]) + 12}" '
                f'height="20" rx="4" fill="{colour}"/><text x="{bx + 5}" y="{cy + 4}" '
                f'fill="white" font-weight="bold">{escape(m["text"])}</text>')
    return f"{open_g}{body}</g>"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]
