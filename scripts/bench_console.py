"""bench.py --console: hosted throughput at 100 in flight with no console open and with
browser tabs on live saga pages, round by round in the same run.

The console runs as `saga-actors console` does, in a process of its own, at the priority
Ray gives its workers (nice 15: where `saga-actors console deploy` runs it, as a Serve
replica). The tabs are Debian's chromium (scripts/console_tabs.py, another process) in Linux's idle
scheduling class (SCHED_IDLE: a person's browser runs on their own machine, not the
cluster's; here it may only take what the cluster leaves). Each tab is on the page of a
saga that waits for a signal all through the run: every tab keeps a request open to the
console, which asks the registry every second (the page's default) whether the saga
moved. The CPU seconds the browser and the console used while measuring are reported
beside the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import ray
from pydantic import BaseModel

from saga_actors import Saga, SagaRuntime, Step, Wait

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-console"
TABS = 10
SETTLE_S = 3.0  # after the tabs opened, before measuring
RAY_WORKER_NICE = 15  # what `ps -o ni` shows for Ray's worker processes here


class Held(BaseModel):
    order_id: str


class Go(BaseModel):
    """The signal that would let a held saga go on (never sent: the bench cancels them)."""


HELD = Saga(name="bench_console_held", input_model=Held, placement="hosted", steps=[
    Step(name="reserve", participant="bench_inventory", action="reserve_inventory",
         compensation="release_inventory"),
    Wait("hold", signal="go", payload=Go, timeout_s=3600)])


def _console(rt: SagaRuntime, port: int) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "SAGA_ACTORS_CONSOLE_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "saga-actors"), "--address",
         ray.get_runtime_context().gcs_address, "--namespace", rt.config.namespace,
         "console", "--port", str(port)], env=env, cwd=ROOT, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.nice(RAY_WORKER_NICE - os.nice(0)))
    deadline = time.monotonic() + 60
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/overview",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    while True:
        try:
            urllib.request.urlopen(request, timeout=5).read()
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the console did not start") from None
            time.sleep(0.2)


def _tabs(url: str, saga_ids: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "console_tabs.py"), url,
                             TOKEN, *saga_ids], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, preexec_fn=_idle)
    line = proc.stdout.readline()
    if line.strip() != "READY":
        raise RuntimeError(f"the browser tabs did not open: {line!r}")
    return proc


def _idle() -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _cpu_s(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and every process under it."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def _close(tabs: subprocess.Popen) -> int:
    tabs.stdin.close()
    out = tabs.stdout.read()
    tabs.wait(timeout=30)
    return int(out.split("REFRESHES ", 1)[1].split()[0])


async def console_rows(rt: SagaRuntime, hosted: Any, measure: Any, median: Any, *, n: int,
                       rounds: int, say: Any) -> dict[str, Any]:
    """Rounds of (none open, TABS open) at 100 in flight; the medians and their ratio."""
    rt.register(HELD)
    held = [rt.start(HELD.name, {"order_id": f"held-{i}"}) for i in range(TABS)]
    port = 18000 + os.getpid() % 1000 + 500
    console = _console(rt, port)
    closed_runs, open_runs, refreshes, seconds = [], [], 0, 0.0
    browser_cpu = console_cpu = 0.0
    try:
        for _ in range(rounds):
            closed_runs.append(await measure("console_closed", hosted, n, 100, "success"))
            tabs = _tabs(f"http://127.0.0.1:{port}", held)
            await asyncio.sleep(SETTLE_S)  # tabs that sit open, not ten being opened
            started, cpu = time.monotonic(), (_cpu_s(tabs.pid), _cpu_s(console.pid))
            try:
                open_runs.append(await measure("console_open", hosted, n, 100, "success"))
            finally:
                seconds += time.monotonic() - started
                browser_cpu += _cpu_s(tabs.pid) - cpu[0]
                console_cpu += _cpu_s(console.pid) - cpu[1]
                refreshes += _close(tabs)
    finally:
        console.terminate()
        console.wait(timeout=30)
        for saga_id in held:
            rt.cancel(saga_id, reason="bench over")
    closed, opened = median(closed_runs), median(open_runs)
    ratio = round(opened["sagas_per_s"] / closed["sagas_per_s"], 3)
    say(f"  console_open / console_closed: {ratio} ({TABS} tabs, {refreshes} live answers in "
        f"{seconds:.0f} s of measuring; CPU s: browser {browser_cpu:.1f}, console "
        f"{console_cpu:.1f})")
    return {"closed": closed, "open": opened, "ratio": ratio, "tabs": TABS,
            "live_answers": refreshes,
            "measured_s": round(seconds, 1), "browser_cpu_s": round(browser_cpu, 1),
            "console_cpu_s": round(console_cpu, 1)}
