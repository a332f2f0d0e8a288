"""One Ray instance per test session; each test isolates itself by its own namespace."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def poll(condition: Callable[[], Any], *, timeout_s: float = 30.0, every_s: float = 0.02,
         what: str = "condition") -> Any:
    """Return the first truthy value of ``condition()``; fail past the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


def timeline_lanes_and_marks(svg: str) -> tuple[list[str], Counter]:
    """A timeline picture's lanes, in order, and its marks by (class, lane); the SVG must be
    well-formed XML, or this raises."""
    groups = list(ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}g"))
    return ([g.get("data-lane") for g in groups if g.get("class") == "lane"],
            Counter((g.get("class").split()[1], g.get("data-lane")) for g in groups
                    if g.get("class", "").startswith("mark ")))


def state_address() -> str:
    """This session's Ray, for the state API (with no address it guesses among every Ray
    on the machine)."""
    import ray

    return ray.get_runtime_context().gcs_address


def kill_namespace(namespace: str) -> None:
    """Kill every live actor of ``namespace`` in the session's Ray."""
    import ray
    from ray.util.state import list_actors

    alive = [("ray_namespace", "=", namespace), ("state", "=", "ALIVE")]
    for a in list_actors(address=state_address(), filters=alive, limit=10_000,
                         raise_on_missing_output=False):
        if a.name:
            with contextlib.suppress(ValueError, ray.exceptions.RayError):  # gone already
                ray.kill(ray.get_actor(a.name, namespace), no_restart=True)


# The slowest modules first: `scripts/test.sh` runs the suite on two pytest-xdist workers,
# one module at a time each, in this order (--no-loadscope-reorder), so the longest ones
# do not start last and leave one worker idle at the end.
SLOW_FIRST = (
    "tests/integration/test_cluster.py",
    "tests/chaos/test_chaos.py",
    "tests/integration/test_launch_script.py",
    "tests/integration/test_placement.py",
    "tests/integration/test_replicas.py",
    "tests/console/test_console_browser.py",
    "tests/console/test_console_serve.py",
    "tests/integration/test_services.py",
    "tests/integration/test_definitions.py",
    "tests/faults/test_actor_crashes.py",
    "tests/integration/test_compositions.py",
    "tests/integration/test_grafana_dashboard.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


# every change to a saga's record is validated, and one relying on pydantic's coercion
# fails (production skips this: the engine gives each field its own type); set before
# Ray starts, so that its workers run the same way
os.environ["SAGA_ACTORS_STRICT_RECORDS"] = "1"

PG_SERVER = os.environ.get("SAGA_ACTORS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@pytest.fixture(scope="session")
def pg_database():
    """A PostgreSQL database of this test session's own, dropped at its end. The server
    must run (.ci/run starts it); a test that needs it fails, never skips, without it."""
    import psycopg

    name = f"saga_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(f"{PG_SERVER}/postgres?connect_timeout=5", autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_SERVER} ({exc}); start it with: "
                    f"{PG_START}", pytrace=False)
    admin.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    yield f"{PG_SERVER}/{name}"
    # a new connection: a test may have restarted the server meanwhile
    with psycopg.connect(f"{PG_SERVER}/postgres?connect_timeout=5", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database):
    """A journal URL in a schema of this test's own."""
    return f"{pg_database}?schema=t_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def ray_session():
    import ray

    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths are capped
    os.environ["RAY_TMPDIR"] = tmp
    # workers import test modules (inline participants and sagas) from the repo root
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # the dashboard serves the state API (what the dashboard itself reads)
    ray.init(namespace="saga_actors_tests", include_dashboard=True, log_to_driver=False,
             _temp_dir=tmp)
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


class RuntimeHarness:
    """A SagaRuntime in its own namespace and data folder; kills what it deployed."""

    def __init__(self, data_dir: Path, placement: str = "dedicated", **settings: Any) -> None:
        from saga_actors import SagaRuntime

        self.runtime = SagaRuntime(namespace=f"t-{uuid.uuid4().hex[:10]}",
                                   data_dir=str(data_dir), **settings)
        self.placement = placement
        self.actors: dict[str, Any] = {}

    def start(self, saga_type: Any, payload: Any, **kwargs: Any) -> str:
        """Start a saga with this harness's placement."""
        return self.runtime.start(saga_type, payload, placement=self.placement, **kwargs)

    def kill_runner(self, saga_id: str, *, no_restart: bool) -> None:
        """Kill what runs ``saga_id``: its own actor, or its SagaHost (and every saga in it)."""
        import ray

        from saga_actors.constants import host_actor_name, saga_actor_name
        from saga_actors.services.host import shard_of

        rt = self.runtime
        name = (host_actor_name(shard_of(saga_id, rt.config.hosts))
                if self.placement == "hosted" else saga_actor_name(saga_id))
        ray.kill(ray.get_actor(name, rt.config.namespace), no_restart=no_restart)

    def deploy(self, cls, *, name: str | None = None, faults: dict | None = None, **kwargs):
        actor = self.runtime.deploy(cls, name=name, faults=faults, **kwargs)
        self.actors[name or cls.name] = actor
        return actor

    def deploy_many(self, classes, **faults):
        """Several participants at once; ``faults`` by participant name."""
        actors = self.runtime.deploy_many(classes, faults=faults)
        self.actors.update(actors)
        return actors

    def close(self) -> None:
        import ray

        from saga_actors.constants import host_actor_name
        from saga_actors.ray.services import find_services

        namespace = self.runtime.config.namespace
        services = [a for a in find_services(namespace) if a is not None]
        for i in range(self.runtime.config.hosts):
            with contextlib.suppress(ValueError):
                services.append(ray.get_actor(host_actor_name(i), namespace))
        for actor in [*services, *self.actors.values(), *self.saga_actors()]:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor, no_restart=True)
        self.runtime.close()

    def saga_actors(self) -> list[Any]:
        """Live saga actors of this test's namespace, found through Ray's state API."""
        import ray
        from ray.util.state import list_actors

        namespace = self.runtime.config.namespace
        alive = [("ray_namespace", "=", namespace), ("state", "=", "ALIVE")]
        found = list_actors(address=state_address(), filters=alive, limit=10_000,
                            raise_on_missing_output=False)
        handles = []
        for a in found:
            if a.name and a.name.startswith("saga:"):
                with contextlib.suppress(ValueError):
                    handles.append(ray.get_actor(a.name, namespace))
        return handles


@pytest.fixture
def make_harness(ray_session, tmp_path):
    made = []

    def make(**settings: Any) -> RuntimeHarness:
        # one host: a hosted test starts one actor fewer (actor starts are most of the
        # suite's time on two cores); sharding is tested where it matters (hosts=2 there)
        settings.setdefault("hosts", 1)
        h = RuntimeHarness(tmp_path / f"data{len(made)}", **settings)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def harness(make_harness):
    return make_harness()


@pytest.fixture(params=["dedicated", "hosted"])
def placed(make_harness, request):
    """A harness whose sagas run with each placement in turn."""
    return make_harness(placement=request.param)


@pytest.fixture(scope="module", params=["dedicated", "hosted"])
def shared(ray_session, tmp_path_factory, request):
    """Like ``placed``, but one harness (runtime, services, participants) for the whole
    module per placement: each Ray actor start costs about a CPU-second here, so tests
    that need nothing fresh share them. Tests judge their own sagas (ledgers by saga id,
    stock and money before and after), and ``deploy`` resets every participant's faults."""
    h = RuntimeHarness(tmp_path_factory.mktemp("shared"), placement=request.param, hosts=1)
    yield h
    h.close()
