"""The ``saga-actors`` command: see and act on sagas in a running cluster, or read the
journal directly when no cluster runs."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from saga_actors.config import RuntimeConfig
from saga_actors.constants import (
    BUS_ACTOR_PREFIX,
    DEFAULT_NAMESPACE,
    HOST_ACTOR_PREFIX,
    OPERATOR_CALL_TIMEOUT_S,
    PARTICIPANT_ACTOR_PREFIX,
    REGISTRY_ACTOR_NAME,
    REGISTRY_READ_TIMEOUT_S,
    SAGA_ACTOR_PREFIX,
    SERVICE_RETRY_S,
    SERVICE_WAIT_S,
    SUPERVISOR_ACTOR_NAME,
)
from saga_actors.errors import SagaError, SagaNotFoundError
from saga_actors.model.state import SagaStatus
from saga_actors.services.registry import RegistryEntry, describe

STATUSES = [s.value for s in SagaStatus]


class ServiceUnavailable(Exception):
    """The supervisor or registry did not answer: its node may be down (Ray restarts it on
    another one), or it is busy."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Cluster:
    """A lazy connection to the cluster's registry and supervisor. Questions go to the
    registry, or to the journal directly while the registry does not answer; operator
    actions go to the supervisor, asked again while it restarts, up to a stated bound."""

    def __init__(self, address: str | None, namespace: str) -> None:
        self.address = address
        self.namespace = namespace
        self._services: tuple[Any, Any] | None = None
        self._fallback: Any = None  # a Registry on the journal, once the registry failed us

    def services(self) -> tuple[Any, Any]:
        if self._services is None:
            self._services = _attach(self.address, self.namespace)
        return self._services

    def query(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Ask the registry (``list``, ``get``, ``counts``); while it does not answer
        within ``REGISTRY_READ_TIMEOUT_S``, the same question is answered from the journal
        (the source of truth the registry caches), with a note on stderr."""
        if self._fallback is None:
            try:
                return self._ask(1, method, args, kwargs, REGISTRY_READ_TIMEOUT_S)
            except ServiceUnavailable as exc:
                self._fallback = self._journal_registry(exc.why)
        return getattr(self._fallback, method)(*args, **kwargs)

    def act(self, method: str, *args: Any) -> Any:
        """Ask the supervisor (``cancel``, ``retry``, ``resolve``, ``signal``: each safe to
        send again); while it does not answer, ask again for up to ``SERVICE_WAIT_S``,
        saying so on stderr, then give up with a clear error."""
        deadline = time.monotonic() + SERVICE_WAIT_S
        while True:
            try:
                return self._ask(0, method, args, {}, OPERATOR_CALL_TIMEOUT_S)
            except ServiceUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise click.ClickException(
                        f"the supervisor did not answer {method} within {SERVICE_WAIT_S:g}s "
                        f"({exc.why}); nothing is known to have happened: see `saga-actors "
                        "show`, and try again") from None
                click.echo(f"the supervisor is not answering ({exc.why}); asking again for "
                           f"up to {left:.0f} s more ...", err=True)
                time.sleep(min(SERVICE_RETRY_S, left))

    def _ask(self, which: int, method: str, args: tuple, kwargs: dict[str, Any],
             timeout_s: float) -> Any:
        """One call to the supervisor (0) or the registry (1); a saga_actors error it raises
        comes back as itself; no answer is :class:`ServiceUnavailable`."""
        import ray

        actor = self.services()[which]
        if actor is None:
            raise ServiceUnavailable("not running")
        try:
            return ray.get(getattr(actor, method).remote(*args, **kwargs), timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise ServiceUnavailable(f"no answer within {timeout_s:g}s") from None
        except ray.exceptions.RayActorError as exc:  # died, or unreachable (its node)
            raise ServiceUnavailable(f"{type(exc).__name__}: its node may be down, and Ray "
                                     "restarts it on another") from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, SagaError):
                raise cause from None
            raise

    def _journal_registry(self, why: str) -> Any:
        """A registry of this process's own on the namespace's journal (where the runtime
        said it is, in the GCS)."""
        from saga_actors.journal import open_journal
        from saga_actors.ray.definitions import runtime_info
        from saga_actors.services.registry import Registry

        info = runtime_info(self.namespace)
        if info is None:
            raise click.ClickException(
                f"the registry did not answer ({why}), and the cluster does not say where "
                "its journal is: try again once Ray has restarted it, or read the journal "
                "with `saga-actors journal --journal URL list`")
        try:
            journal = open_journal(info["journal"], read_only=True)
        except SagaError as exc:
            raise click.ClickException(
                f"the registry did not answer ({why}), and its journal cannot be read from "
                f"here: {exc}. Try again once Ray has restarted the registry") from None
        click.echo(f"note: the registry is not answering ({why}); answered from the "
                   f"journal ({_safe_url(info['journal'])}) directly", err=True)
        return Registry(journal, hosts=info["hosts"])


def _safe_url(url: str) -> str:
    """A journal URL without its password."""
    head, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{head}{sep}{creds.split(':', 1)[0]}:***@{host}"


def _cluster_options(fn: Any) -> Any:
    """``--address`` and ``--namespace`` after the command too (``list --address X``)."""
    def set_address(ctx: click.Context, _: Any, value: str | None) -> None:
        if value:
            ctx.find_object(Cluster).address = value

    def set_namespace(ctx: click.Context, _: Any, value: str | None) -> None:
        if value:
            ctx.find_object(Cluster).namespace = value

    fn = click.option("--namespace", expose_value=False, callback=set_namespace,
                      help="The runtime's Ray namespace (as before the command).")(fn)
    return click.option("--address", expose_value=False, callback=set_address,
                        help="Ray cluster HOST:PORT (as before the command).")(fn)


def _check_svg(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.lower().endswith(".svg"):
        raise click.BadParameter(f"{value!r}: the timeline is drawn as SVG; name a .svg file",
                                 param=param)
    return value


def _timeline_option(fn: Any) -> Any:
    return click.option("--timeline", metavar="FILE.svg", callback=_check_svg,
                        help="Also draw the saga's timeline into this SVG file.")(fn)


def _write_timeline(info: dict[str, Any], path: str | None) -> None:
    if path is None:
        return
    from saga_actors.ops.timeline import render_svg

    try:
        Path(path).write_text(render_svg(info))
    except OSError as exc:
        raise click.ClickException(f"cannot write the timeline to {path}: "
                                   f"{exc.strerror or exc}") from None
    click.echo(f"timeline written to {path}", err=True)


def _connect(address: str, namespace: str) -> None:
    """Attach this process to the cluster at ``address``; a clear error if it does not
    answer."""
    from saga_actors.runtime import check_reachable

    try:
        check_reachable(address)
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray 2.60 local clusters use tokens
    if not ray.is_initialized():  # (already attached when run in-process, as in tests)
        ray.init(address=address, namespace=namespace, log_to_driver=False,
                 logging_level="ERROR", configure_logging=False)


def _attach(address: str | None, namespace: str) -> tuple[Any, Any]:
    if not address:
        raise click.ClickException(
            "no cluster address: pass --address HOST:PORT or set RAY_ADDRESS "
            "(to read the journal without a cluster: saga-actors journal list)"
        )
    _connect(address, namespace)
    from saga_actors.ray.actors import find_services
    from saga_actors.ray.definitions import runtime_info

    supervisor, registry = find_services(namespace)
    if (supervisor is None or registry is None) and runtime_info(namespace) is None:
        raise click.ClickException(
            f"no saga_actors services in namespace {namespace!r} at {address} "
            "(nothing launched there yet?)"
        )
    return supervisor, registry  # one may be gone for now: the caller says so


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3] if ts else "-"


def _stdout() -> Any:
    """This command's own stdout (``sys.stdout`` is Ray's while it runs: see :func:`main`)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_STDOUT, sys.stdout) if ctx else sys.stdout


def _out(text: str) -> None:
    """A line of the command's output, on its own stdout."""
    click.echo(text, file=_stdout())


_STDOUT = "saga_actors.stdout"


def _console() -> Console:
    """rich output on stdout: fitted to a terminal; unwrapped when piped (for scripts)."""
    tty = _stdout().isatty()
    return Console(file=_stdout(), highlight=False, emoji=False, markup=False, soft_wrap=not tty,
                   width=None if tty else PIPE_WIDTH)


def _emit(renderable: RenderableType, console: Console | None = None) -> None:
    """Print for a person (a terminal) or for a script (piped: no colour, no padding at
    line ends)."""
    console = console or _console()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    _out("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]],
           empty: str = "(no sagas)") -> RenderableType:
    if not rows:
        return Text(empty)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for key, title in columns:
        wide = key in ("error", "last_error", "detail")
        table.add_column(title, overflow="fold" if wide else "ellipsis", no_wrap=not wide)
    for row in rows:
        table.add_row(*[_cell(row.get(key)) for key, _ in columns])
    return table


def _cell(value: Any) -> Text:
    return Text("-" if value is None else str(value), style=_STYLES.get(str(value), ""))


_STYLES = {"COMPLETED": "green", "FAILED": "red", "STUCK": "bold magenta",
           "COMPENSATING": "yellow", "PENDING": "cyan", "succeeded": "green",
           "compensated": "magenta", "failed": "red"}
PIPE_WIDTH = 1000  # piped output is not wrapped: one saga a line, for grep and scripts


LIST_COLUMNS = [("saga_id", "SAGA"), ("saga_type", "TYPE"), ("status", "STATUS"),
                ("current_step", "STEP"), ("attempt", "ATTEMPT"), ("updated", "UPDATED"),
                ("error", "LAST ERROR")]


def _list_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "updated": _when(e["updated_at"]),
             "status": e["status"] + (" (waiting for its definition)" if e.get("waiting_for")
                                      else ""),
             "error": (e.get("error") or "")[:60] or None} for e in entries]


def _show(info: dict[str, Any]) -> RenderableType:
    """One saga: what it is, where it runs, its steps and its history."""
    facts = Table.grid(padding=(0, 3))
    facts.add_column(style="bold")
    facts.add_column()
    version = f" v{info['version']}" if info.get("version") else ""
    shape = f", shape {info['shape']}" if info.get("shape") else ""
    facts.add_row("saga", f"{info['saga_id']} ({info['saga_type']}{version}{shape}, "
                  f"{info['placement']})")
    facts.add_row("status", _cell(info["status"]))
    facts.add_row("runs in", info["runner"])
    if info.get("parent_id"):
        facts.add_row("parent", f"{info['parent_id']} (which runs it)")
    if info.get("children"):
        facts.add_row("children", ", ".join(info["children"]))
    if info.get("waiting_for"):
        facts.add_row("waiting", f"for {info['waiting_for']}")
    if info.get("awaiting"):
        waited = f" for {info['awaiting_s']:.0f} s" if info.get("awaiting_s") is not None else ""
        head, _, rest = info["awaiting"].partition("; ")
        facts.add_row("waiting", f"for {head}{waited}" + (f"; {rest}" if rest else ""))
    facts.add_row("started", f"{_when(info['created_at'])}   updated {_when(info['updated_at'])}"
                  f"   finished {_when(info.get('finished_at'))}")
    if info.get("restarts"):
        facts.add_row("restarts", str(info["restarts"]))
    if info.get("error"):
        facts.add_row("error", Text(info["error"]))
    steps = _table([{**s, "started": _when(s["started_at"]), "ended": _when(s["ended_at"]),
                     "duration": f"{s['duration_s']:.3f}s" if "duration_s" in s else None}
                    for s in info["steps"]],
                   [("step", "STEP"), ("phase", "PHASE"), ("attempts", "ATTEMPTS"),
                    ("outcome", "OUTCOME"), ("started", "STARTED"), ("duration", "TOOK"),
                    ("last_error", "LAST ERROR")], empty="(no steps yet)")
    history = _table([{**t, "time": _when(t["at"]),
                       "detail": json.dumps(t["detail"]) if t["detail"] else None}
                      for t in info["history"]],
                     [("seq", "SEQ"), ("time", "TIME"), ("event", "EVENT"),
                      ("status", "STATUS"), ("step", "STEP"), ("attempt", "ATTEMPT"),
                      ("detail", "DETAIL")])
    parts: list[RenderableType] = [facts]
    if info.get("events"):
        parts += [Text("\nevents", style="bold"), _table(
            [{**e, "time": _when(e["at"]), "cause": (e.get("causation_id") or "")[:8] or None,
              "id": e["id"][:8]} for e in info["events"]],
            [("id", "ID"), ("time", "TIME"), ("type", "EVENT"), ("producer", "PRODUCER"),
             ("consumer", "CONSUMER"), ("cause", "CAUSED BY")])]
    return Group(*parts, Text("\nsteps", style="bold"), steps, Text("\nhistory", style="bold"),
                 history)


@click.group()
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster HOST:PORT (or RAY_ADDRESS).")
@click.option("--namespace", envvar="SAGA_ACTORS_NAMESPACE", default=DEFAULT_NAMESPACE,
              show_default=True, help="The runtime's Ray namespace.")
@click.pass_context
def main(ctx: click.Context, address: str | None, namespace: str) -> None:
    """See and act on sagas: list, show, watch, cancel, retry, resolve."""
    ctx.obj = Cluster(address, namespace)
    # Ray prints what it hears from the cluster (a node's death) on sys.stdout: while this
    # command runs that is stderr, and stdout holds the command's output alone (--json)
    ctx.meta[_STDOUT], sys.stdout = sys.stdout, sys.stderr
    ctx.call_on_close(lambda: setattr(sys, "stdout", ctx.meta[_STDOUT]))


@main.command("list")
@_cluster_options
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False))
@click.option("--type", "saga_type", help="Only sagas of this type.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array on stdout.")
@click.pass_obj
def list_cmd(cluster: Cluster, status: str | None, saga_type: str | None, limit: int,
             as_json: bool) -> None:
    """Sagas, newest first."""
    entries = cluster.query("list", status=status.upper() if status else None,
                           saga_type=saga_type, limit=limit)
    if as_json:
        _out(json.dumps(entries))
    else:
        _emit(_table(_list_rows(entries), LIST_COLUMNS))


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@_timeline_option
@click.pass_obj
def show(cluster: Cluster, saga_id: str, as_json: bool, timeline: str | None) -> None:
    """One saga: state, steps with attempts and timings, history, last error."""
    info = _get(cluster, saga_id)
    _write_timeline(info, timeline)
    _out(json.dumps(info)) if as_json else _emit(_show(info))


def _get(cluster: Cluster, saga_id: str) -> dict[str, Any]:
    try:
        return cluster.query("get", saga_id)
    except SagaNotFoundError:
        raise click.ClickException(f"no saga with id {saga_id!r}") from None


@main.command()
@_cluster_options
@click.argument("saga_id", required=False)
@click.option("--interval", type=click.FloatRange(0.1), default=1.0, show_default=True)
@click.option("--count", type=click.IntRange(1), help="Stop after this many refreshes.")
@click.pass_obj
def watch(cluster: Cluster, saga_id: str | None, interval: float, count: int | None) -> None:
    """A live view (one saga, or counts and the latest sagas) until interrupted."""
    def frame() -> RenderableType:
        title = Text(f"saga-actors watch  {datetime.now():%H:%M:%S}  (Ctrl-C to stop)\n",
                     style="bold")
        if saga_id:
            return Group(title, _show(_get(cluster, saga_id)))
        counts = cluster.query("counts")
        line = Text("  ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
        return Group(title, line, _table(_list_rows(cluster.query("list", limit=20)),
                                         LIST_COLUMNS))

    console = _console()
    n = 0
    try:
        if console.is_terminal:  # one live view, redrawn in place
            with Live(frame(), console=console, auto_refresh=False) as live:
                n = 1
                while count is None or n < count:
                    time.sleep(interval)
                    live.update(frame(), refresh=True)
                    n += 1
            return
        while count is None or n < count:  # piped: one frame after another
            n += 1
            _emit(frame(), console)
            if count is None or n < count:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.option("--reason", default="cancelled by operator", show_default=True)
@click.pass_obj
def cancel(cluster: Cluster, saga_id: str, reason: str) -> None:
    """Abort a running saga: it compensates and ends FAILED."""
    _get(cluster, saga_id)
    refusal = _operator(cluster.act, "cancel_refusal", saga_id, reason)
    if refusal:
        raise click.ClickException(f"saga {saga_id} cannot be cancelled: {refusal}")
    _out(f"cancel requested: {saga_id} will compensate and end FAILED")


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.argument("name")
@click.option("--data", "data", default="{}", show_default=True,
              help="The signal's payload, as JSON.")
@click.option("--id", "signal_id", default=None,
              help="Signal id (default: a new one); the same id sent again is taken once.")
@click.pass_obj
def signal(cluster: Cluster, saga_id: str, name: str, data: str, signal_id: str | None) -> None:
    """Send the signal NAME to a saga waiting for it (or that will)."""
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    _get(cluster, saga_id)
    signal_id = signal_id or uuid.uuid4().hex
    fresh = _operator(cluster.act, "signal", saga_id, name, payload, signal_id)
    _out(f"signal {name!r} {'sent' if fresh else 'was sent before'}: {saga_id} "
               f"(signal id {signal_id})")


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.pass_obj
def retry(cluster: Cluster, saga_id: str) -> None:
    """Re-drive a STUCK saga's pending work (its compensations, usually)."""
    _get(cluster, saga_id)
    resumes = _operator(cluster.act, "retry", saga_id)
    _out(f"retrying {saga_id}: it resumes in {resumes}")


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.option("--note", required=True, help="What the operator did; kept in the history.")
@click.pass_obj
def resolve(cluster: Cluster, saga_id: str, note: str) -> None:
    """Mark a STUCK saga resolved by hand: it ends FAILED with the note in its history."""
    _get(cluster, saga_id)
    _operator(cluster.act, "resolve", saga_id, note)
    _out(f"resolved {saga_id}")


def _operator(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except SagaError as exc:  # RunnerUnavailableError too: the host did not answer
        raise click.ClickException(str(exc)) from None


@main.command("services")
@_cluster_options
@click.option("--json", "as_json", is_flag=True, help="A JSON array on stdout.")
@click.pass_obj
def services_cmd(cluster: Cluster, as_json: bool) -> None:
    """Which node runs each participant, saga host and bus, the supervisor and the
    registry (saga actors of `dedicated` sagas: `show` names each one's)."""
    rows = _service_rows(cluster)
    if as_json:
        _out(json.dumps(rows))
        return
    _emit(_table([{**r, "node": r["node_id"][:12] + (" (head)" if r["head"] else "")}
                  for r in rows],
                 [("name", "NAME"), ("kind", "KIND"), ("state", "STATE"), ("node", "NODE"),
                  ("node_ip", "ADDRESS"), ("pid", "PID")], empty="(no services)"))


def _service_rows(cluster: Cluster) -> list[dict[str, Any]]:
    """The namespace's long-lived actors, from Ray's state API, with their nodes."""
    cluster.services()  # attached, and the runtime is there
    import ray
    from ray.util.state import list_actors

    try:
        actors = list_actors(address=ray.get_runtime_context().gcs_address,
                             limit=STATE_API_LIMIT, raise_on_missing_output=False,
                             filters=[("ray_namespace", "=", cluster.namespace),
                                      ("state", "!=", "DEAD")])
    except Exception as exc:  # the state API lives in the dashboard
        raise click.ClickException(f"Ray's state API did not answer ({type(exc).__name__}: "
                                   f"{str(exc)[:300]}); it needs Ray's dashboard on the head "
                                   "node") from None
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    rows = []
    for a in actors:
        if not a.name or a.name.startswith(SAGA_ACTOR_PREFIX) or a.state == "DEAD":
            continue
        node = nodes.get(a.node_id or "", {})
        rows.append({"name": a.name, "kind": _kind_of(a.name), "state": a.state,
                     "node_id": a.node_id or "", "node_ip": node.get("NodeManagerAddress"),
                     "head": "node:__internal_head__" in node.get("Resources", {}),
                     "pid": a.pid})
    return sorted(rows, key=lambda r: (_KINDS.index(r["kind"]), r["name"]))


STATE_API_LIMIT = 10_000  # the most Ray's state API returns by default (dedicated sagas count)
_KINDS = ["participant", "host", "bus", "supervisor", "registry", "other"]


def _kind_of(name: str) -> str:
    for prefix, kind in ((PARTICIPANT_ACTOR_PREFIX, "participant"),
                         (HOST_ACTOR_PREFIX, "host"), (BUS_ACTOR_PREFIX, "bus"),
                         (SUPERVISOR_ACTOR_NAME, "supervisor"),
                         (REGISTRY_ACTOR_NAME, "registry")):
        if name.startswith(prefix):
            return kind
    return "other"


# --- straight from the journal --------------------------------------------------------


def ctx_hosts() -> int:
    """The hosts setting in effect (``SAGA_ACTORS_HOSTS``), to name a hosted saga's host."""
    return RuntimeConfig.load().hosts


@main.group()
@click.option("--journal", "journal_url", envvar="SAGA_ACTORS_JOURNAL_URL",
              help="Journal URL (default: SQLite in --data-dir).")
@click.option("--data-dir", envvar="SAGA_ACTORS_DATA_DIR", default=".saga_actors",
              show_default=True)
@click.pass_context
def journal(ctx: click.Context, journal_url: str | None, data_dir: str) -> None:
    """Read the journal directly (no cluster needed)."""
    from saga_actors.journal import open_journal

    url = RuntimeConfig.load(data_dir=data_dir, journal_url=journal_url).journal
    try:
        ctx.obj = open_journal(url, read_only=True)
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None


@journal.command("list")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False))
@click.option("--type", "saga_type")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def journal_list(store: Any, status: str | None, saga_type: str | None, limit: int,
                 as_json: bool) -> None:
    """Sagas in the journal, newest first."""
    records = store.query(statuses=[status.upper()] if status else None, saga_type=saga_type,
                          limit=limit, newest_first=True)
    entries = [RegistryEntry.of(r).model_dump(mode="json") for r in records]
    _out(json.dumps(entries)) if as_json else _emit(
        _table(_list_rows(entries), LIST_COLUMNS))


@journal.command("show")
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True)
@_timeline_option
@click.pass_obj
def journal_show(store: Any, saga_id: str, as_json: bool, timeline: str | None) -> None:
    """One saga from the journal."""
    record = store.load(saga_id)
    if record is None:
        raise click.ClickException(f"no saga with id {saga_id!r} in {store.url}")
    info = describe(record, store.history(saga_id), hosts=ctx_hosts())
    _write_timeline(info, timeline)
    _out(json.dumps(info)) if as_json else _emit(_show(info))


# --- the Grafana dashboard ------------------------------------------------------------


@main.group()
def dashboard() -> None:
    """The Grafana dashboard for sagas (panels in Ray's Grafana)."""


@dashboard.command("install")
@click.option("--dir", "folder", type=click.Path(file_okay=False),
              help="Write it into this folder (made if need be) instead of the cluster's "
              "Grafana provisioning.")
@_cluster_options
@click.pass_obj
def dashboard_install(cluster: Cluster, folder: str | None) -> None:
    """Write the dashboard into the running cluster's Grafana provisioning folder
    (<session>/metrics/grafana/dashboards, on the head node), or into --dir."""
    from saga_actors.ops.grafana import PROVISIONING_SUBDIR, install

    create = folder is not None  # a folder the operator names is made if need be
    if folder is None:
        if not cluster.address:
            raise click.ClickException("no cluster address: pass --address HOST:PORT or set "
                                       "RAY_ADDRESS, or write the file with --dir FOLDER")
        target = Path(_session_dir(cluster)) / PROVISIONING_SUBDIR
        if not target.is_dir():
            raise click.ClickException(
                f"Ray's Grafana folder {target} is not on this machine (run this on the head "
                "node, start Ray with its dashboard, or pass --dir FOLDER)")
        folder = str(target)
    try:
        written = install(folder, create=create)
    except OSError as exc:
        raise click.ClickException(f"cannot write the dashboard into {folder}: "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None
    _out(f"dashboard written to {written}")


def _session_dir(cluster: Cluster) -> str:
    """The session folder of the cluster this command attaches to."""
    _connect(cluster.address, cluster.namespace)
    import ray

    return ray._private.worker._global_node.get_session_dir_path()


if __name__ == "__main__":
    main()
