"""The transition table, and every public error surviving a pickle round trip."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

import saga_actors
from saga_actors import errors
from saga_actors.model.state import (
    ALLOWED,
    TERMINAL,
    IllegalTransitionError,
    SagaStatus,
    check_transition,
)


def test_terminal_states_have_no_way_out_except_stuck():
    assert {SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.STUCK} == TERMINAL
    assert not ALLOWED[SagaStatus.COMPLETED] and not ALLOWED[SagaStatus.FAILED]
    assert SagaStatus.COMPLETED not in ALLOWED[SagaStatus.STUCK]
    # the one exception: a parent undoes its COMPLETED child saga
    with pytest.raises(IllegalTransitionError):
        check_transition(SagaStatus.COMPLETED, SagaStatus.COMPENSATING)
    check_transition(SagaStatus.COMPLETED, SagaStatus.COMPENSATING, child_undo=True)
    with pytest.raises(IllegalTransitionError):
        check_transition(SagaStatus.FAILED, SagaStatus.COMPENSATING, child_undo=True)


def test_forbidden_transition_raises():
    check_transition(SagaStatus.PENDING, SagaStatus.COMPENSATING)
    with pytest.raises(IllegalTransitionError, match="COMPLETED -> PENDING"):
        check_transition(SagaStatus.COMPLETED, SagaStatus.PENDING)
    with pytest.raises(IllegalTransitionError):
        check_transition(SagaStatus.STARTED, SagaStatus.COMPLETED)


SAMPLES = [
    errors.SagaDefinitionError("s", "bad"),
    errors.SagaInputError("s", "x: missing"),
    errors.UnknownSagaTypeError("nope", ("a", "b")),
    errors.UnknownParticipantError("p", "m", "why"),
    errors.SagaConflictError("id", "why"),
    errors.SagaNotFoundError("id"),
    errors.UnknownSignalError("id", "approval", "no wait step takes it"),
    errors.SignalPayloadError("id", "approval", "approved: field required"),
    errors.SagaFinishedError("id", "COMPLETED"),
    errors.UnknownEventError("Nope", "order_choreography", "not declared"),
    errors.ConfigError("max_dedicated", "lots", "SAGA_ACTORS_MAX_DEDICATED", "not an int"),
    errors.InvalidSagaIdError("has/slash"),
    errors.UnknownPlacementError("elsewhere"),
    errors.JournalError("sqlite:///x", "locked"),
    errors.ParticipantStoreError("/x.sqlite", "newer"),
    errors.StoreUnavailableError("postgresql://h/db?schema=p", "server restarting"),
    errors.ClusterUnreachableError("10.0.0.1:6380", "Connection refused"),
    errors.StepError("boom", retryable=False),
    errors.NonRetryableError("declined"),
    errors.ActionRefusedError("refused"),
    errors.StepTimeoutError("id", "step", 2, 1.5),
    errors.ParticipantUnavailableError("p", "died"),
    errors.SagaWaitTimeoutError("id", "PENDING", 3),
    errors.SagaActorLost("id", "actor died"),
    errors.DefinitionStoreError("order", 2, "GcsUnavailable: no answer"),
    errors.RunnerUnavailableError("id", "saga_actors:host:1", "cancel", "no answer within 2s"),
    IllegalTransitionError("A", "B"),
]


@pytest.mark.parametrize("err", SAMPLES, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_data(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert vars(back) == vars(err)


def test_error_families():
    assert issubclass(errors.SagaDefinitionError, errors.SagaUsageError)
    assert issubclass(errors.StepTimeoutError, errors.SagaRuntimeError)
    assert not issubclass(errors.SagaUsageError, errors.SagaRuntimeError)
    assert errors.NonRetryableError("x").retryable is False
    with pytest.raises(TypeError):  # it is non-retryable by name: no flag to contradict it
        errors.NonRetryableError("x", retryable=True)


def test_public_names_are_frozen():
    assert saga_actors.__all__ == sorted(saga_actors.__all__, key=lambda n: (n[0].islower(), n))
    assert set(saga_actors.__all__) == {
        "ActionRefusedError", "Choreography", "ClusterUnreachableError", "ConfigError",
        "DefinitionStoreError",
        "InvalidSagaIdError", "Reaction",
        "JournalConflictError", "JournalError", "NonRetryableError", "Participant",
        "ParticipantStoreError", "ParticipantUnavailableError", "RetryPolicy",
        "RunnerUnavailableError", "RuntimeConfig", "Saga",
        "SagaConflictError", "SagaDefinitionError", "SagaError", "SagaInputError",
        "SagaNotFoundError", "SagaRecord", "SagaRuntime", "SagaRuntimeError", "SagaStatus",
        "SagaUsageError", "SagaWaitTimeoutError", "Step", "StepContext", "StepError",
        "StepKind", "StepTimeoutError", "StoreUnavailableError", "Transition",
        "UnknownParticipantError",
        "UnknownEventError", "UnknownPlacementError", "UnknownSagaTypeError", "action",
        "compensation", "configure_logging",
        # sagas as users write them: parallel groups, child sagas, waits for signals
        "Child", "Parallel", "Wait", "Signal", "SignalError", "UnknownSignalError",
        "SignalPayloadError", "SagaFinishedError",
        # events from outside into a running choreographed saga
        "EventPayloadError", "UncorrelatedEventError",
        # participants that ask Ray for what no node has
        "ParticipantPlacementError",
    }
    from saga_actors import testing
    assert testing.__all__ == ["Fault", "FakeClock", "Injection", "SagaTestKit", "crash_points"]


def test_the_error_tree_is_frozen():
    """Every error class and its parent: a new error, or a moved one, is a decision."""
    tree = {name: cls.__bases__[0].__name__ for name, cls in vars(errors).items()
            if isinstance(cls, type) and issubclass(cls, Exception)
            and cls.__module__ == errors.__name__}
    assert tree == {
        "SagaError": "Exception",
        "SagaUsageError": "SagaError",
        "SagaDefinitionError": "SagaUsageError",
        "SagaInputError": "SagaUsageError",
        "UnknownSagaTypeError": "SagaUsageError",
        "UnknownParticipantError": "SagaUsageError",
        "SagaConflictError": "SagaUsageError",
        "InvalidSagaIdError": "SagaUsageError",
        "UnknownPlacementError": "SagaUsageError",
        "UnknownEventError": "SagaUsageError",
        "ConfigError": "SagaUsageError",
        "SagaNotFoundError": "SagaUsageError",
        "SignalError": "SagaUsageError",
        "UnknownSignalError": "SignalError",
        "SignalPayloadError": "SignalError",
        "SagaFinishedError": "SignalError",
        "EventPayloadError": "SignalError", "UncorrelatedEventError": "UnknownEventError",
        "ParticipantPlacementError": "SagaUsageError",
        "JournalError": "SagaError",
        "ParticipantStoreError": "SagaError",
        "StoreUnavailableError": "ParticipantStoreError",
        "ClusterUnreachableError": "SagaError",
        "SagaRuntimeError": "SagaError",
        "StepError": "SagaRuntimeError",
        "NonRetryableError": "StepError",
        "ActionRefusedError": "NonRetryableError",
        "StepTimeoutError": "SagaRuntimeError",
        "DefinitionStoreError": "SagaRuntimeError",
        "ParticipantUnavailableError": "SagaRuntimeError",
        "SagaWaitTimeoutError": "SagaRuntimeError",
        "RunnerUnavailableError": "SagaRuntimeError",
        "SagaActorLost": "SagaRuntimeError",
    }
    # every public error is in saga_actors' exports, so users catch it by name
    public = {n for n in tree if n != "SagaActorLost"}
    assert public <= set(saga_actors.__all__)


def test_no_code_path_turns_ray_authentication_off():
    """Every place the project touches Ray's auth mode sets it to token, never off."""
    root = Path(__file__).resolve().parents[2]
    touched = []
    for folder in ("saga_actors", "scripts", "examples", "participants"):
        for path in (root / folder).rglob("*"):
            if path.suffix not in (".py", ".sh"):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"auth_mode|AUTH_MODE|--disable-auth", line, re.IGNORECASE):
                    touched.append((f"{path.relative_to(root)}:{n}", line.strip()))
    assert touched  # the CLI sets it: the scan does see the code
    assert all('"token"' in line for _, line in touched), touched


# what may import Ray: its own package, and what stands above it (the client, the CLI)
RAY_USERS = ("saga_actors.ray", "saga_actors.runtime", "saga_actors.ops.cli")


def package_modules() -> list[str]:
    """Every module of the package, packages included, by dotted name."""
    package = Path(saga_actors.__file__).parent
    top = package / "__init__.py"
    return sorted("saga_actors." + p.relative_to(package).with_suffix("").as_posix()
                  .replace("/", ".").removesuffix(".__init__")
                  for p in package.rglob("*.py") if p != top)


def test_no_module_outside_the_ray_package_imports_ray():
    """Ray is imported by ``saga_actors.ray`` alone: what stands above it (the client, the
    CLI, the test kit) goes through it."""
    import ast

    package = Path(saga_actors.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        if path.relative_to(package).parts[0] == "ray":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert found == []


def test_nothing_below_the_ray_package_imports_ray():
    """Every module but the Ray package and what stands above it imports in a fresh
    interpreter where ``import ray`` fails, and loads no part of Ray."""
    import subprocess
    import sys

    ray_free = [m for m in package_modules()
                if not any(m == u or m.startswith(u + ".") for u in RAY_USERS)]
    assert "saga_actors.engine.orchestration" in ray_free and len(ray_free) > 30
    code = ("import sys; sys.modules['ray'] = None\n"
            + "".join(f"import {m}\n" for m in ray_free)
            + "assert not any(k == 'ray' or k.startswith('ray.') for k in sys.modules"
              " if sys.modules[k] is not None)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert done.returncode == 0, done.stderr


def test_settings_come_from_defaults_then_environment_then_arguments(monkeypatch):
    from saga_actors import ConfigError, RuntimeConfig

    assert RuntimeConfig.load().max_dedicated == 64
    monkeypatch.setenv("SAGA_ACTORS_MAX_DEDICATED", "7")
    monkeypatch.setenv("SAGA_ACTORS_BATCH_CALLS", "false")
    monkeypatch.setenv("SAGA_ACTORS_CRASH_POINTS", '["pay:action:sent"]')
    config = RuntimeConfig.load()
    assert (config.max_dedicated, config.batch_calls, config.crash_points) == (
        7, False, ("pay:action:sent",))
    assert RuntimeConfig.load(max_dedicated=3).max_dedicated == 3  # arguments win
    monkeypatch.setenv("SAGA_ACTORS_MAX_DEDICATED", "lots")
    with pytest.raises(ConfigError, match="'max_dedicated' = 'lots' "
                                          r"\(from SAGA_ACTORS_MAX_DEDICATED\)"):
        RuntimeConfig.load()
    with pytest.raises(ConfigError, match="'hosts' = 0 \\(from argument\\)"):
        RuntimeConfig.load(max_dedicated=3, hosts=0)
    monkeypatch.delenv("SAGA_ACTORS_MAX_DEDICATED")
    with pytest.raises(ConfigError, match="'max_dedicatd'.*no such setting"):
        RuntimeConfig.load(max_dedicatd=3)


def test_no_private_attribute_of_asyncio_is_read():
    """asyncio's private members (a lock's ``_waiters``) change between Python versions."""
    import ast
    import asyncio

    loop = asyncio.new_event_loop()
    try:  # instances: their private attributes are set in __init__, not on the class
        samples = [asyncio.Lock(), asyncio.Event(), asyncio.Semaphore(), asyncio.Queue(),
                   asyncio.Condition(), loop.create_future()]
    finally:
        loop.close()
    private = {name for sample in samples for kind in (sample, type(sample))
               for name in dir(kind) if name.startswith("_") and not name.endswith("__")}
    package = Path(saga_actors.__file__).parent
    trees = {path: ast.parse(path.read_text()) for path in package.rglob("*.py")}
    # our own private names (a method or an attribute we set) may share asyncio's
    own = {node.name for tree in trees.values() for node in ast.walk(tree)
           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    own |= {target.attr for tree in trees.values() for node in ast.walk(tree)
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Attribute)}
    found = [f"{path.relative_to(package)}:{node.lineno} .{node.attr}"
             for path, tree in trees.items() for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr in private - own]
    assert found == []


def test_the_python_floor_is_said_the_same_everywhere_and_is_the_one_running():
    """requires-python, ruff's target and the README name one floor, and it is met here
    (the code uses 3.11's asyncio: Task.cancelling)."""
    import re
    import sys
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    floor = project["project"]["requires-python"].removeprefix(">=")
    assert project["tool"]["ruff"]["target-version"] == "py" + floor.replace(".", "")
    said = set(re.findall(r"Python (3\.\d+)\+", (root / "README.md").read_text()))
    assert said == {floor}
    assert sys.version_info >= tuple(map(int, floor.split("."))) >= (3, 11)


def test_the_wheel_holds_saga_actors_only():
    """The examples and the example participants stay in the checkout (importable from it
    and from a Ray job's working dir): a top-level ``examples`` or ``participants`` in
    site-packages would collide with other projects'."""
    import tomllib

    from setuptools import find_packages

    root = Path(__file__).resolve().parents[2]
    found = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]
    packages = find_packages(str(root), include=found["include"])
    assert packages and all(p == "saga_actors" or p.startswith("saga_actors.")
                            for p in packages), packages
    assert "saga_actors.ops" in packages  # with its dashboard JSON (package data)


def test_no_module_is_longer_than_400_lines_nor_any_function_than_60():
    import ast

    package = Path(saga_actors.__file__).parent
    long_modules, long_functions = [], []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 400:
            long_modules.append(f"{path.relative_to(package)}: {text.count(chr(10))}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long_functions.append(f"{path.relative_to(package)}:{node.name}: {lines}")
    assert long_functions == []
    assert long_modules == []
