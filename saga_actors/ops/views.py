"""What the ``saga-actors`` command prints: tables that fit the terminal (one saga a line
when piped), a saga's page, and its timeline picture."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from saga_actors.model.records import Expect, awaited_apart


def check_svg(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.lower().endswith(".svg"):
        raise click.BadParameter(f"{value!r}: the timeline is drawn as SVG; name a .svg file",
                                 param=param)
    return value


def timeline_option(fn: Any) -> Any:
    return click.option("--timeline", metavar="FILE.svg", callback=check_svg,
                        help="Also draw the saga's timeline into this SVG file.")(fn)


def write_timeline(info: dict[str, Any], path: str | None) -> None:
    if path is None:
        return
    from saga_actors.ops.timeline import render_svg

    try:
        Path(path).write_text(render_svg(info))
    except OSError as exc:
        raise click.ClickException(f"cannot write the timeline to {path}: "
                                   f"{exc.strerror or exc}") from None
    click.echo(f"timeline written to {path}", err=True)


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3] if ts else "-"


def stdout() -> Any:
    """This command's own stdout (``sys.stdout`` is Ray's while it runs: see :func:`main`)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(STDOUT, sys.stdout) if ctx else sys.stdout


def out(text: str) -> None:
    """A line of the command's output, on its own stdout."""
    click.echo(text, file=stdout())


STDOUT = "saga_actors.stdout"


def terminal() -> Console:
    """rich output on stdout: fitted to a terminal; unwrapped when piped (for scripts)."""
    tty = stdout().isatty()
    return Console(file=stdout(), highlight=False, emoji=False, markup=False, soft_wrap=not tty,
                   width=None if tty else PIPE_WIDTH)


def emit(renderable: RenderableType, console: Console | None = None) -> None:
    """Print for a person (a terminal) or for a script (piped: no colour, no padding at
    line ends)."""
    console = console or terminal()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    out("\n".join(line.rstrip() for line in captured.get().splitlines()))


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]],
           empty: str = "(no sagas)") -> RenderableType:
    if not rows:
        return Text(empty)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for key, title in columns:
        wide = key in ("error", "last_error", "detail")
        table.add_column(title, overflow="fold" if wide else "ellipsis", no_wrap=not wide)
    for row in rows:
        table.add_row(*[cell(row.get(key)) for key, _ in columns])
    return table


def cell(value: Any) -> Text:
    return Text("-" if value is None else str(value), style=STYLES.get(str(value), ""))


STYLES = {"COMPLETED": "green", "FAILED": "red", "STUCK": "bold magenta",
           "COMPENSATING": "yellow", "PENDING": "cyan", "succeeded": "green",
           "compensated": "magenta", "failed": "red"}
PIPE_WIDTH = 1000  # piped output is not wrapped: one saga a line, for grep and scripts


LIST_COLUMNS = [("saga_id", "SAGA"), ("saga_type", "TYPE"), ("status", "STATUS"),
                ("current_step", "STEP"), ("attempt", "ATTEMPT"), ("updated", "UPDATED"),
                ("error", "LAST ERROR")]


def list_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "updated": when(e["updated_at"]),
             "status": e["status"] + (" (waiting for its definition)" if e.get("waiting_for")
                                      else ""),
             "error": (e.get("error") or "")[:60] or None} for e in entries]


def show_view(info: dict[str, Any]) -> RenderableType:
    """One saga: what it is, where it runs, its steps and its history."""
    facts = Table.grid(padding=(0, 3))
    facts.add_column(style="bold")
    facts.add_column()
    version = f" v{info['version']}" if info.get("version") else ""
    shape = f", shape {info['shape']}" if info.get("shape") else ""
    facts.add_row("saga", f"{info['saga_id']} ({info['saga_type']}{version}{shape}, "
                  f"{info['placement']})")
    facts.add_row("status", cell(info["status"]))
    facts.add_row("runs in", info["runner"])
    if info.get("parent_id"):
        facts.add_row("parent", f"{info['parent_id']} (which runs it)")
    if info.get("children"):
        facts.add_row("children", ", ".join(info["children"]))
    if info.get("waiting_for"):
        facts.add_row("waiting", f"for {info['waiting_for']}")
    for wait in info.get("signals_awaited", ()):
        facts.add_row("waiting", f"for signal {wait['signal']!r} (step {wait['step']}, "
                      f"until {when(wait['until'])})")
    _awaited_rows(facts, info)
    facts.add_row("started", f"{when(info['created_at'])}   updated {when(info['updated_at'])}"
                  f"   finished {when(info.get('finished_at'))}")
    if info.get("restarts"):
        facts.add_row("restarts", str(info["restarts"]))
    if info.get("error"):
        facts.add_row("error", Text(info["error"]))
    steps = table([{**s, "started": when(s["started_at"]), "ended": when(s["ended_at"]),
                     "duration": f"{s['duration_s']:.3f}s" if "duration_s" in s else None}
                    for s in info["steps"]],
                   [("step", "STEP"), ("phase", "PHASE"), ("attempts", "ATTEMPTS"),
                    ("outcome", "OUTCOME"), ("started", "STARTED"), ("duration", "TOOK"),
                    *([("replica", "REPLICA")] if any("replica" in s for s in info["steps"])
                      else []),
                    ("last_error", "LAST ERROR")], empty="(no steps yet)")
    history = table([{**t, "time": when(t["at"]),
                       "detail": json.dumps(t["detail"]) if t["detail"] else None}
                      for t in info["history"]],
                     [("seq", "SEQ"), ("time", "TIME"), ("event", "EVENT"),
                      ("status", "STATUS"), ("step", "STEP"), ("attempt", "ATTEMPT"),
                      ("detail", "DETAIL")])
    parts: list[RenderableType] = [facts]
    if info.get("events"):
        parts += [Text("\nevents", style="bold"), table(
            [{**e, "time": when(e["at"]), "cause": (e.get("causation_id") or "")[:8] or None,
              "id": e["id"][:8]} for e in info["events"]],
            [("id", "ID"), ("time", "TIME"), ("type", "EVENT"), ("producer", "PRODUCER"),
             ("consumer", "CONSUMER"), ("cause", "CAUSED BY")])]
    return Group(*parts, Text("\nsteps", style="bold"), steps, Text("\nhistory", style="bold"),
                 history)


def _awaited_rows(facts: Table, info: dict[str, Any]) -> None:
    """What a choreographed saga waits for (the reactions under way, a join's other
    events, an event from outside with how long of its window), and its steps' states."""
    expects = [Expect(**x) for x in info.get("expects", ())]
    running = awaited_apart(info.get("awaiting"), expects)  # (each expect said below)
    if running:
        waited = f" for {info['awaiting_s']:.0f} s" if info.get("awaiting_s") is not None else ""
        head, _, rest = running.partition("; ")
        facts.add_row("waiting", f"for {head}{waited}" + (f"; {rest}" if rest else ""))
    if info["status"] not in ("COMPLETED", "FAILED"):
        for x in expects:
            facts.add_row("waiting", f"for {x.text(now=time.time())}")
    if len(info.get("branches") or {}) > 1:
        facts.add_row("steps", ", ".join(f"{step} {state}" for step, state
                                            in info["branches"].items()))
