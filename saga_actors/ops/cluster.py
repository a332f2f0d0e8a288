"""How the ``saga-actors`` command reaches a cluster: it attaches, asks the registry (or,
while the registry does not answer, the journal directly) and the supervisor (asked again
while it restarts), and lists where the runtime's services run."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from saga_actors.constants import (
    BUS_ACTOR_PREFIX,
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
from saga_actors.errors import SagaError


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
        self._fallback_at = 0.0  # (when: a long-lived caller, the console, asks it again)

    def services(self) -> tuple[Any, Any]:
        if self._services is None:
            self._services = attach(self.address, self.namespace)
        return self._services

    def query(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Ask the registry (``list``, ``get``, ``counts``); while it does not answer
        within ``REGISTRY_READ_TIMEOUT_S``, the same question is answered from the journal
        (the source of truth the registry caches), with a note on stderr."""
        if self._fallback is None or time.monotonic() - self._fallback_at > REGISTRY_RETRY_S:
            try:
                answer = self._ask(1, method, args, kwargs, REGISTRY_READ_TIMEOUT_S)
                self._fallback = None
                return answer
            except ServiceUnavailable as exc:
                if self._fallback is None:
                    self._fallback = self._journal_registry(exc.why)
                self._fallback_at = time.monotonic()
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
        from saga_actors.ray import calls

        actor = self.services()[which]
        if actor is None:
            raise ServiceUnavailable("not running")
        try:
            return calls.get(getattr(actor, method).remote(*args, **kwargs), timeout_s=timeout_s)
        except calls.GetTimeoutError:
            raise ServiceUnavailable(f"no answer within {timeout_s:g}s") from None
        except calls.RayActorError as exc:  # died, or unreachable (its node)
            raise ServiceUnavailable(f"{type(exc).__name__}: its node may be down, and Ray "
                                     "restarts it on another") from None

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
                   f"journal ({safe_url(info['journal'])}) directly", err=True)
        return Registry(journal, hosts=info["hosts"])


def safe_url(url: str) -> str:
    """A journal URL without its password."""
    head, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{head}{sep}{creds.split(':', 1)[0]}:***@{host}"


def connect(address: str, namespace: str) -> None:
    """Attach this process to the cluster at ``address``; a clear error if it does not
    answer."""
    from saga_actors.ray import calls
    from saga_actors.ray.cluster import check_reachable

    try:
        check_reachable(address)
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray 2.60 local clusters use tokens
    calls.attach(address, namespace)


def attach(address: str | None, namespace: str) -> tuple[Any, Any]:
    """The namespace's supervisor and registry, attaching to the cluster at ``address``
    first (no address: this process runs in the cluster, as the console's Serve app)."""
    if address:
        connect(address, namespace)
    else:
        from saga_actors.ray import calls

        if not calls.is_initialized():
            raise click.ClickException(
                "no cluster address: pass --address HOST:PORT or set RAY_ADDRESS "
                "(to read the journal without a cluster: saga-actors journal list)")
        address = calls.gcs_address()
    from saga_actors.ray.definitions import runtime_info
    from saga_actors.ray.services import find_services

    supervisor, registry = find_services(namespace)
    if (supervisor is None or registry is None) and runtime_info(namespace) is None:
        raise click.ClickException(
            f"no saga_actors services in namespace {namespace!r} at {address} "
            "(nothing launched there yet?)"
        )
    return supervisor, registry  # one may be gone for now: the caller says so


def service_rows(cluster: Cluster) -> list[dict[str, Any]]:
    """The namespace's long-lived actors, from Ray's state API, with their nodes."""
    cluster.services()  # attached, and the runtime is there
    from saga_actors.ray import calls

    try:
        actors = calls.namespace_actors(cluster.namespace, STATE_API_LIMIT)
    except Exception as exc:  # the state API lives in the dashboard
        raise click.ClickException(f"Ray's state API did not answer ({type(exc).__name__}: "
                                   f"{str(exc)[:300]}); it needs Ray's dashboard on the head "
                                   "node") from None
    nodes = calls.nodes()
    rows = []
    for a in actors:
        if not a.name or a.name.startswith(SAGA_ACTOR_PREFIX) or a.state == "DEAD":
            continue
        node = nodes.get(a.node_id or "", {})
        rows.append({"name": a.name, "kind": kind_of(a.name), "state": a.state,
                     "node_id": a.node_id or "", "node_ip": node.get("NodeManagerAddress"),
                     "head": "node:__internal_head__" in node.get("Resources", {}),
                     "pid": a.pid})
    return sorted(rows, key=lambda r: (KINDS.index(r["kind"]), r["name"]))


REGISTRY_RETRY_S = 30.0  # once answered from the journal, the registry is asked again after
STATE_API_LIMIT = 10_000  # the most Ray's state API returns by default (dedicated sagas count)
KINDS = ["participant", "host", "bus", "supervisor", "registry", "other"]


def kind_of(name: str) -> str:
    for prefix, kind in ((PARTICIPANT_ACTOR_PREFIX, "participant"),
                         (HOST_ACTOR_PREFIX, "host"), (BUS_ACTOR_PREFIX, "bus"),
                         (SUPERVISOR_ACTOR_NAME, "supervisor"),
                         (REGISTRY_ACTOR_NAME, "registry")):
        if name.startswith(prefix):
            return kind
    return "other"


def session_dir(cluster: Cluster) -> str:
    """The session folder of the cluster this command attaches to."""
    connect(cluster.address, cluster.namespace)
    from saga_actors.ray import calls

    return calls.session_dir()
