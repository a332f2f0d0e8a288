"""A real Ray cluster for tests: `ray start --head --block` on free ports, in its own
process group and temp folder, stopped by killing exactly that group (never `ray stop`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


_GIVEN: set[int] = set()  # the OS may hand out a just-closed port again: never twice here


def free_port() -> int:
    """A free TCP port, never one this process was given before (two of a cluster's
    components on one port make `ray start` fail)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def _tail(proc: subprocess.Popen, limit: int = 1500) -> str:
    """What a dead process wrote to stderr so far, without waiting for the pipe to close
    (a daemon it started may still hold it)."""
    os.set_blocking(proc.stderr.fileno(), False)
    try:
        data = proc.stderr.read() or b""
    except OSError:
        data = b""
    return data.decode(errors="replace")[-limit:]


class LocalCluster:
    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_port = free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="rayc-", dir="/tmp")
        self.proc: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.worker_nodes: dict[str, subprocess.Popen] = {}  # Ray node id -> its process
        self._cpus: dict[subprocess.Popen, int] = {}  # each live worker's CPUs

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # as with an activated venv
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_TMPDIR": self.temp_dir,
                "PYTHONPATH": str(ROOT), "PATH": path, **extra}

    def start(self, timeout_s: float = 90, **env: str) -> LocalCluster:
        """The head node; ``env``: e.g. Ray's own settings as ``RAY_<name>``."""
        self.proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--port", str(self.port),
             "--node-ip-address", "127.0.0.1", "--temp-dir", self.temp_dir,
             "--dashboard-port", str(self.dashboard_port), "--num-cpus", "2",
             "--ray-client-server-port", str(free_port()), "--min-worker-port", "0",
             # every agent on its own free port: a default one (52365, ...) may be taken by
             # another Ray on this machine, and its job agent would then never come up
             "--dashboard-agent-listen-port", str(free_port()),
             "--dashboard-agent-grpc-port", str(free_port()),
             "--metrics-export-port", str(free_port()),
             "--runtime-env-agent-port", str(free_port()),
             "--max-worker-port", "0", "--disable-usage-stats"],
            env=self.env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, cwd=ROOT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start failed: {_tail(self.proc, 2000)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("ray start did not open its port") from None
                time.sleep(0.2)

    def add_worker(self, timeout_s: float = 90, resources: dict[str, float] | None = None,
                   num_cpus: int = 1) -> LocalCluster:
        """A second node (another raylet on this machine), joined to the head; with
        ``resources``, custom resources only it has. A node whose start dies is started
        again, twice at most: Ray's raylet gives its dashboard agent a fixed 15 s to write
        its port file and exits past it (ray-project/ray#65983), which a loaded 2-core VM
        can exceed."""
        count = len(self.worker_nodes) + 2  # the head, the live workers, this one
        cpus_before = 2 + sum(self._cpus.values())  # the head's 2, the other workers'
        for attempt in range(3):
            proc = self._start_worker(resources, num_cpus)
            checker = subprocess.Popen([sys.executable, "-c", (
                "import time, ray\n"
                "ray.init(logging_level='ERROR')  # RAY_ADDRESS: this cluster\n"
                f"deadline = time.monotonic() + {timeout_s}\n"
                # joined, and its CPU in the scheduler's view (else actors skip the node)
                f"while (len(alive := [n for n in ray.nodes() if n['Alive']]) < {count}\n"
                f"       or ray.cluster_resources().get('CPU', 0) < {cpus_before + num_cpus}):\n"
                "    assert time.monotonic() < deadline, 'the worker node did not join'\n"
                "    time.sleep(0.2)\n"
                "print(' '.join(n['NodeID'] for n in alive))\n")], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=self.env(RAY_ADDRESS=self.address),
                cwd=ROOT)
            while checker.poll() is None and proc.poll() is None:
                time.sleep(0.2)
            if proc.poll() is None:
                break
            checker.kill()
            checker.wait()
            with contextlib.suppress(ProcessLookupError):  # what the dead start left
                os.killpg(proc.pid, signal.SIGKILL)
            if attempt == 2:
                raise RuntimeError(f"a worker node's ray start died 3 times: {_tail(proc)}")
        out, err = checker.communicate()
        if checker.returncode != 0:
            raise AssertionError(f"the worker node did not join:\n{err[-4000:]}")
        self.workers.append(proc)
        self._cpus[proc] = num_cpus
        known = {*self.worker_nodes, self.head_node}
        new = [n for n in out.split() if n not in known]
        self.worker_nodes[new[0]] = proc
        return self

    def _start_worker(self, resources: dict[str, float] | None,
                      num_cpus: int) -> subprocess.Popen:
        extra = ["--resources", json.dumps(resources)] if resources else []
        return subprocess.Popen(
            [str(BIN / "ray"), "start", "--address", self.address, "--block",
             "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), *extra,
             "--dashboard-agent-listen-port", str(free_port()),
             "--dashboard-agent-grpc-port", str(free_port()),
             "--metrics-export-port", str(free_port()),
             "--runtime-env-agent-port", str(free_port()),
             "--min-worker-port", "0", "--max-worker-port", "0", "--disable-usage-stats"],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, cwd=ROOT,
        )

    @property
    def head_node(self) -> str:
        if not hasattr(self, "_head_node"):
            self._head_node = self.run(sys.executable, "-c", (
                "import ray\nray.init(logging_level='ERROR')\n"
                "print(ray.get_runtime_context().get_node_id())\n")).stdout.split()[-1]
        return self._head_node

    def remove_worker(self, node_id: str) -> None:
        """Kill one worker node at once (its raylet and everything it started)."""
        proc = self.worker_nodes.pop(node_id)
        self._cpus.pop(proc, None)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def actors(self, namespace: str) -> list[dict]:
        """Live actors of ``namespace``: name, node id, state (from the state API)."""
        out = self.run(sys.executable, "-c", (
            "import json, ray\nfrom ray.util.state import list_actors\n"
            "ray.init(logging_level='ERROR')\n"
            "rows = list_actors(address=ray.get_runtime_context().gcs_address, limit=10_000,"
            f" filters=[('ray_namespace', '=', {namespace!r}), ('state', '=', 'ALIVE')])\n"
            "print('ACTORS', json.dumps([{'name': a.name, 'node_id': a.node_id} for a in rows]))"
            "\n"))
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("ACTORS "))
        return json.loads(line.removeprefix("ACTORS "))

    def stop(self) -> None:
        """Kill the whole cluster at once, as a power cut would."""
        if self.proc is None:
            return
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        self.workers = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        # workers and daemons may have left the group: every process of this cluster
        # carries its temp dir in its environment (RAY_TMPDIR)
        deadline = time.monotonic() + 30
        while pids := self._processes():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster processes survived the stop: {pids}")
            time.sleep(0.1)
        self.proc = None

    def _processes(self) -> list[int]:
        marker = f"RAY_TMPDIR={self.temp_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes():
                    status = (entry / "status").read_text()
                    if "\nState:\tZ" not in status:  # zombies are already dead
                        found.append(int(entry.name))
            except OSError:
                continue
        return found

    def run(self, *args: str, timeout_s: float = 180, check: bool = True,
            **env: str) -> subprocess.CompletedProcess:
        """Run a command against this cluster (RAY_ADDRESS set, token auth on)."""
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout_s,
                              env=self.env(RAY_ADDRESS=self.address, **env), cwd=ROOT)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        return proc
