"""One Ray instance per test session; each test isolates itself by its own namespace."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
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


@pytest.fixture(scope="session")
def ray_session():
    import ray

    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths are capped
    os.environ["RAY_TMPDIR"] = tmp
    # workers import test modules (inline participants and sagas) from the repo root
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # the dashboard serves the state API (what the dashboard itself reads)
    ray.init(namespace="saga_actors_tests", include_dashboard=True, log_to_driver=False,
             _temp_dir=tmp)
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


class RuntimeHarness:
    """A SagaRuntime in its own namespace and data folder; kills what it deployed."""

    def __init__(self, data_dir: Path) -> None:
        from saga_actors import SagaRuntime

        self.runtime = SagaRuntime(namespace=f"t-{uuid.uuid4().hex[:10]}", data_dir=str(data_dir))
        self.actors: dict[str, Any] = {}

    def deploy(self, cls, *, name: str | None = None, faults: dict | None = None, **kwargs):
        actor = self.runtime.deploy(cls, name=name, faults=faults, **kwargs)
        self.actors[name or cls.name] = actor
        return actor

    def close(self) -> None:
        import ray

        from saga_actors.actors import find_services

        services = [a for a in find_services(self.runtime.config.namespace) if a is not None]
        for actor in [*self.actors.values(), *services]:
            ray.kill(actor, no_restart=True)
        self.runtime.close()


@pytest.fixture
def harness(ray_session, tmp_path):
    h = RuntimeHarness(tmp_path / "data")
    yield h
    h.close()
