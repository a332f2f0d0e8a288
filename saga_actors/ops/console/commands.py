"""``saga-actors console``: the saga console here (``--port``), or deployed on the cluster
as the Ray Serve application ``saga_actors_console`` (``deploy``)."""

from __future__ import annotations

import functools
import socket
from typing import Any

import click

from saga_actors.errors import SagaError
from saga_actors.ops.cluster import Cluster, connect
from saga_actors.ops.console.settings import (
    CONSOLE_APP_NAME,
    DEFAULT_PORT,
    NO_TOKEN,
    TOKEN_ENV,
    ConsoleSettings,
    find_token,
    token_hash,
)
from saga_actors.ops.views import out


def _options(fn: Any) -> Any:
    for option in reversed([
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Listen on this address (0.0.0.0: every interface; put TLS in "
                     "front of it)."),
        click.option("--token", envvar=TOKEN_ENV, help="The token that opens the console "
                     f"(or {TOKEN_ENV}; default: Ray's own token)."),
        click.option("--open-read", is_flag=True, help="Read-only pages need no token "
                     "(actions always do)."),
    ]):
        fn = option(fn)
    return fn


def _settings(cluster: Cluster, address: str | None, token: str | None,
              open_read: bool) -> ConsoleSettings:
    secret, source = find_token(token)
    if secret is None and not open_read:
        raise click.ClickException(NO_TOKEN)
    return ConsoleSettings(address=address, namespace=cluster.namespace,
                           token_sha256=token_hash(secret) if secret else None,
                           token_source=source, open_read=open_read)


@click.group(invoke_without_command=True)
@_options
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.pass_context
def console(ctx: click.Context, host: str, token: str | None, open_read: bool,
            port: int) -> None:
    """The saga console in a browser: served here until Ctrl-C (this command), or on the
    cluster through Ray Serve (`console deploy`)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from saga_actors.ops.console.app import build_app

    cluster: Cluster = ctx.find_object(Cluster)
    settings = _settings(cluster, cluster.address, token, open_read)
    _check_free(host, port)
    cluster.services()  # attached, and the runtime is there: a clear error if not
    click.echo(f"saga console on http://{host}:{port}/ (namespace {cluster.namespace}; "
               f"token: {settings.token_source}{'; pages open to read' if open_read else ''})"
               "; Ctrl-C to stop", err=True)
    uvicorn.run(build_app(settings), host=host, port=port, log_level="warning")


def _check_free(host: str, port: int) -> None:
    """A clear error, before anything else, when the address cannot be listened on."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror or exc}): "
                                   "pass another --port or --host") from None


@console.command("deploy")
@_options
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="Serve's HTTP port, if Serve is not running yet.")
@click.option("--route-prefix", default="/sagas", show_default=True)
@click.pass_obj
def deploy(cluster: Cluster, host: str, token: str | None, open_read: bool, port: int,
           route_prefix: str) -> None:
    """Deploy the console as the Ray Serve application saga_actors_console."""
    from saga_actors.ops.console.app import build_app
    from saga_actors.ray.serve_app import deploy_asgi

    settings = _settings(cluster, None, token, open_read)  # in the cluster: no address
    cluster.services()
    try:
        deploy_asgi(functools.partial(build_app, settings), app_name=CONSOLE_APP_NAME,
                    route_prefix=route_prefix, host=host, port=port,
                    progress=lambda line: click.echo(line, err=True))
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None
    out(f"{CONSOLE_APP_NAME} is RUNNING: http://{host}:{port}{route_prefix.rstrip('/')}/ "
        f"(token: {settings.token_source})")


@console.command("remove")
@click.pass_obj
def remove(cluster: Cluster) -> None:
    """Remove the console's Serve application from the cluster."""
    from saga_actors.ray.serve_app import delete_app

    connect(cluster.address, cluster.namespace) if cluster.address else cluster.services()
    out(f"{CONSOLE_APP_NAME} removed" if delete_app(CONSOLE_APP_NAME)
        else f"no {CONSOLE_APP_NAME} application runs there")
