"""An ASGI application (the saga console) as a Ray Serve application: listed in the Ray
dashboard's Serve view, run by a replica on the cluster, reached through Serve's proxy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from saga_actors.errors import SagaUsageError

DEPLOYMENT_NAME = "SagaConsole"
READY_TIMEOUT_S = 120.0


def deploy_asgi(build: Callable[[], Any], *, app_name: str, route_prefix: str, host: str,
                port: int, progress: Callable[[str], None] = lambda _: None) -> str:
    """Run ``build()``'s ASGI app as the Serve application ``app_name`` at ``route_prefix``
    (Serve's proxy on ``host:port``, unless Serve already runs with its own); wait until it
    is RUNNING, saying so every few seconds. Returns Serve's status for it."""
    from ray import serve

    if not route_prefix.startswith("/") or (len(route_prefix) > 1 and route_prefix.endswith("/")):
        raise SagaUsageError(f"route prefix {route_prefix!r}: it starts with '/' and does not "
                             "end with one (e.g. /sagas)")
    serve.start(http_options={"host": host, "port": port})

    def build_on_the_replica() -> Any:  # (Serve takes a builder only if it is a function)
        return build()

    # (a live page's request is held until something changes: many at once)
    @serve.deployment(name=DEPLOYMENT_NAME, num_replicas=1, max_ongoing_requests=1000,
                      ray_actor_options={"num_cpus": 0, "memory": 1 << 20})
    @serve.ingress(build_on_the_replica)
    class SagaConsole:
        """The saga console (one replica: it holds no state; the registry does)."""

    serve.run(SagaConsole.bind(), name=app_name, route_prefix=route_prefix, blocking=False)
    started, said = time.monotonic(), 0.0
    while True:
        status = app_status(app_name)
        if status == "RUNNING":
            return status
        waited = time.monotonic() - started
        if status in ("DEPLOY_FAILED", "UNHEALTHY") or waited > READY_TIMEOUT_S:
            detail = serve.status().applications.get(app_name)
            raise SagaUsageError(f"the Serve application {app_name!r} is {status} after "
                                 f"{waited:.0f}s: {getattr(detail, 'message', '')}")
        if waited - said >= 5:
            progress(f"waiting for {app_name} to run ({status}, {waited:.0f}s) ...")
            said = waited
        time.sleep(0.2)


def app_status(app_name: str) -> str | None:
    """Serve's status of the application (RUNNING, DEPLOYING, ...), None if there is none."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    return None if app is None else str(getattr(app.status, "value", app.status))


def delete_app(app_name: str) -> bool:
    """Remove the application; False if there was none."""
    from ray import serve

    if app_status(app_name) is None:
        return False
    serve.delete(app_name)
    return True
