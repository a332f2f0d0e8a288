"""The ``saga-actors`` command: see and act on sagas in a running cluster, or read the
journal directly when no cluster runs."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from saga_actors.config import RuntimeConfig
from saga_actors.constants import (
    DEFAULT_NAMESPACE,
)
from saga_actors.errors import SagaError
from saga_actors.model.state import SagaStatus
from saga_actors.ops import actions
from saga_actors.ops.cluster import Cluster, service_rows, session_dir
from saga_actors.ops.console.commands import console
from saga_actors.ops.views import (
    LIST_COLUMNS,
    STDOUT,
    emit,
    list_rows,
    out,
    show_view,
    table,
    terminal,
    timeline_option,
    write_timeline,
)
from saga_actors.services.registry import RegistryEntry, describe

STATUSES = [s.value for s in SagaStatus]


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


@click.group()
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster HOST:PORT (or RAY_ADDRESS).")
@click.option("--namespace", envvar="SAGA_ACTORS_NAMESPACE", default=DEFAULT_NAMESPACE,
              show_default=True, help="The runtime's Ray namespace.")
@click.pass_context
def main(ctx: click.Context, address: str | None, namespace: str) -> None:
    """See and act on sagas: list, show, watch, cancel, retry, resolve, signal; where the
    services run (services); the journal without a cluster (journal); Grafana (dashboard);
    the saga console in a browser (console)."""
    ctx.obj = Cluster(address, namespace)
    # Ray prints what it hears from the cluster (a node's death) on sys.stdout, from a
    # thread of its own and as late as the process's exit: from here on that is stderr,
    # and stdout holds the command's output alone (--json). (Not put back: Ray may print
    # after the command; click's test runner puts its own streams back itself.)
    ctx.meta[STDOUT], sys.stdout = sys.stdout, sys.stderr


@main.command("list")
@_cluster_options
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False))
@click.option("--type", "saga_type", help="Only sagas of this type.")
@click.option("--version", type=click.IntRange(1), help="Only sagas of this definition version.")
@click.option("--prefix", "id_prefix", help="Only sagas whose id starts with this.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array on stdout.")
@click.pass_obj
def list_cmd(cluster: Cluster, status: str | None, saga_type: str | None, version: int | None,
             id_prefix: str | None, limit: int, as_json: bool) -> None:
    """Sagas, newest first."""
    entries = cluster.query("list", status=status.upper() if status else None,
                           saga_type=saga_type, version=version, id_prefix=id_prefix,
                           limit=limit)
    if as_json:
        out(json.dumps(entries))
    else:
        emit(table(list_rows(entries), LIST_COLUMNS))


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@timeline_option
@click.pass_obj
def show(cluster: Cluster, saga_id: str, as_json: bool, timeline: str | None) -> None:
    """One saga: state, steps with attempts and timings, history, last error."""
    info = actions.get_saga(cluster, saga_id)
    write_timeline(info, timeline)
    out(json.dumps(info)) if as_json else emit(show_view(info))


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
            return Group(title, show_view(actions.get_saga(cluster, saga_id)))
        counts = cluster.query("counts")
        line = Text("  ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
        return Group(title, line, table(list_rows(cluster.query("list", limit=20)),
                                         LIST_COLUMNS))

    console = terminal()
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
            emit(frame(), console)
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
    out(actions.cancel(cluster, saga_id, reason))


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
    out(actions.signal(cluster, saga_id, name, _json_data(data), signal_id))


@main.command()
@_cluster_options
@click.argument("choreography")
@click.argument("event")
@click.option("--data", "data", default="{}", show_default=True,
              help="The event's payload, as JSON.")
@click.option("--saga-id", default=None,
              help="The saga it is for (default: found by the event's correlation field).")
@click.option("--id", "event_id", default=None,
              help="The sender's event id (default: a new one); the same id sent again is "
                   "kept once.")
@click.option("--version", type=int, default=None, help="Of the choreography (default: newest).")
@click.pass_obj
def publish(cluster: Cluster, choreography: str, event: str, data: str, saga_id: str | None,
            event_id: str | None, version: int | None) -> None:
    """Send EVENT from outside into a running saga of CHOREOGRAPHY (a webhook's event)."""
    out(actions.publish(cluster, choreography, event, _json_data(data), saga_id=saga_id,
                        event_id=event_id, version=version))


def _json_data(data: str) -> Any:
    """The payload of a --data option; not JSON is said for that option."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None


@main.command()
@_cluster_options
@click.argument("participant")
@click.argument("replicas", type=int)
@click.pass_obj
def scale(cluster: Cluster, participant: str, replicas: int) -> None:
    """Run REPLICAS actors of PARTICIPANT while sagas run (its class must be importable)."""
    out(actions.scale(cluster, participant, replicas))


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.pass_obj
def retry(cluster: Cluster, saga_id: str) -> None:
    """Re-drive a STUCK saga's pending work (its compensations, usually)."""
    out(actions.retry(cluster, saga_id))


@main.command()
@_cluster_options
@click.argument("saga_id")
@click.option("--note", required=True, help="What the operator did; kept in the history.")
@click.pass_obj
def resolve(cluster: Cluster, saga_id: str, note: str) -> None:
    """Mark a STUCK saga resolved by hand: it ends FAILED with the note in its history."""
    out(actions.resolve(cluster, saga_id, note))


@main.command("services")
@_cluster_options
@click.option("--json", "as_json", is_flag=True, help="A JSON array on stdout.")
@click.pass_obj
def services_cmd(cluster: Cluster, as_json: bool) -> None:
    """Which node runs each participant, saga host and bus, the supervisor and the
    registry (saga actors of `dedicated` sagas: `show` names each one's)."""
    rows = service_rows(cluster)
    if as_json:
        out(json.dumps(rows))
        return
    emit(table([{**r, "node": r["node_id"][:12] + (" (head)" if r["head"] else "")}
                  for r in rows],
                 [("name", "NAME"), ("kind", "KIND"), ("state", "STATE"), ("node", "NODE"),
                  ("node_ip", "ADDRESS"), ("pid", "PID")], empty="(no services)"))


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
    entries = [RegistryEntry.json_of(r) for r in records]
    out(json.dumps(entries)) if as_json else emit(
        table(list_rows(entries), LIST_COLUMNS))


@journal.command("show")
@click.argument("saga_id")
@click.option("--json", "as_json", is_flag=True)
@timeline_option
@click.pass_obj
def journal_show(store: Any, saga_id: str, as_json: bool, timeline: str | None) -> None:
    """One saga from the journal."""
    record = store.load(saga_id)
    if record is None:
        raise click.ClickException(f"no saga with id {saga_id!r} in {store.url}")
    info = describe(record, store.history(saga_id), hosts=ctx_hosts())
    write_timeline(info, timeline)
    out(json.dumps(info)) if as_json else emit(show_view(info))


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
        target = Path(session_dir(cluster)) / PROVISIONING_SUBDIR
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
    out(f"dashboard written to {written}")


main.add_command(console)

if __name__ == "__main__":
    main()
