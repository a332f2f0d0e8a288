"""Launch example sagas and report how they ended.

    python scripts/launch_sagas.py [EXAMPLE] [--count N] [--fail-step STEP]
        [--crash-step STEP] [--no-approve] [--no-confirm] [--address ADDR] [--journal URL]
        [--store-url URL] [--json] [--verbose]

Without --address it starts an embedded local Ray and uses the SQLite journal under
--data-dir. With --journal postgresql://..., the participants' stores go in the same
database, a schema each, unless --store-url says where. --fail-step S makes the
participant of step S fail that step non-retryably; --crash-step S kills each saga's
actor once while step S is in flight (Ray restarts it and it resumes from the journal).
An example whose saga waits for signals (business_trip: a manager's approval) gets them
--approve-after seconds after launch; --no-approve withholds them (the waits time out).
An example whose choreography takes events from outside (order_choreography_parallel: the
payment provider's capture webhook) gets them --confirm-after seconds after launch, sent
by a separate process (scripts/webhook.py) and found by their correlation field;
--no-confirm withholds them (the capture window, --confirm-within, passes).
With --json, stdout holds exactly one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from rich import box  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table  # noqa: E402

from saga_actors import (  # noqa: E402
    SagaError,
    SagaRecord,
    SagaRuntime,
    SagaStatus,
    configure_logging,
)
from saga_actors.constants import participant_actor_name  # noqa: E402
from saga_actors.model.records import runner_name  # noqa: E402
from saga_actors.participant.stores import stores_beside  # noqa: E402
from saga_actors.testing import Fault  # noqa: E402

EXAMPLES = {
    "order_fulfillment": ("examples.order_fulfillment", "ORDER_FULFILLMENT"),
    "trip_booking": ("examples.trip_booking", "TRIP_BOOKING"),
    "order_choreography": ("examples.order_choreography", "ORDER_CHOREOGRAPHY"),
    "business_trip": ("examples.business_trip", "BUSINESS_TRIP"),
    "order_choreography_parallel": ("examples.order_choreography_parallel",
                                    "ORDER_CHOREOGRAPHY_PARALLEL"),
}
CRASH_DELAY_S = 1.5  # how long the crash step stays in flight, so the kill lands mid-call


def ray_init_options(args: argparse.Namespace) -> dict[str, Any]:
    """Ray's own chatter (its start banner, every actor's log lines, its note on log
    deduplication) only with --verbose: the progress and the table come first."""
    quiet = {} if args.verbose else {"logging_level": "ERROR"}
    return {"log_to_driver": args.verbose and not args.json, **quiet,
            **({"include_dashboard": False} if args.address is None else {})}


def logs_folder() -> str:
    """Where this Ray session keeps every process's log files."""
    return os.path.join(ray._private.worker._global_node.get_session_dir_path(), "logs")


def examples_with_waits() -> list[str]:
    """The examples whose sagas wait for a signal (what --no-approve withholds)."""
    found = []
    for name, (module_name, attr) in sorted(EXAMPLES.items()):
        saga = getattr(importlib.import_module(module_name), attr)
        if hasattr(saga, "signals") and saga.signals():
            found.append(name)
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("example", nargs="?", default="order_fulfillment", choices=sorted(EXAMPLES))
    p.add_argument("--count", type=int, default=3, help="sagas to launch (default 3)")
    p.add_argument("--fail-step", metavar="STEP", help="the participant fails STEP for good")
    p.add_argument("--crash-step", metavar="STEP",
                   help="kill what runs STEP while it is in flight, once per saga: the saga "
                        "actor or its host (orchestrated), the participant (choreography)")
    p.add_argument("--slow-step", metavar="STEP", help="the participant takes --slow-s on STEP")
    p.add_argument("--slow-s", type=float, default=3.0, help="seconds for --slow-step")
    p.add_argument("--approve-after", type=float, default=None, metavar="S",
                   help="send the signals the sagas wait for (an approval) S seconds after "
                        "launch (default 1)")
    p.add_argument("--no-approve", action="store_true",
                   help="never send them: each wait times out and the saga compensates")
    p.add_argument("--confirm-after", type=float, default=1.0, metavar="S",
                   help="send the events from outside (a payment capture) S seconds after "
                        "launch, from a separate process (default 1)")
    p.add_argument("--no-confirm", action="store_true",
                   help="never send them: the capture window passes and every saga "
                        "compensates")
    p.add_argument("--confirm-within", type=float, default=None, metavar="S",
                   help="the window the events from outside must come in (default: the "
                        "example's; 5 with --no-confirm)")
    p.add_argument("--resume", action="store_true",
                   help="launch nothing; (re)deploy participants and services and wait for "
                        "every unfinished saga in the journal (after a cluster restart)")
    p.add_argument("--placement", choices=["dedicated", "hosted"],
                   help="one Ray actor per saga (dedicated, default) or many per SagaHost "
                        "(a choreography always runs on the bus)")
    p.add_argument("--address", help="attach to this Ray cluster instead of starting one")
    p.add_argument("--journal", metavar="URL", help="journal URL (default: SQLite in --data-dir)")
    p.add_argument("--store-url", metavar="URL",
                   help="the participants' stores: postgresql://... (a schema each); default: "
                        "beside a PostgreSQL journal, else SQLite files in --data-dir")
    p.add_argument("--data-dir", default=os.environ.get("SAGA_ACTORS_DATA_DIR", ".saga_actors"))
    p.add_argument("--namespace", default=None, help="Ray namespace (default saga_actors)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the sagas")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--verbose", action="store_true",
                   help="print Ray's messages and every actor's log lines here too")
    p.add_argument("--no-wait", action="store_true",
                   help="launch and exit; the sagas go on in the cluster (needs --address)")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error("--count must be at least 1")
    if args.no_wait and not (args.address or os.environ.get("RAY_ADDRESS")):
        p.error("--no-wait needs --address: an embedded Ray ends with this script")
    if args.no_wait and args.crash_step:
        p.error("--crash-step needs to watch the sagas: it cannot be used with --no-wait")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr  # Ray may print to stdout: keep it for the JSON alone
    module_name, attr = EXAMPLES[args.example]
    module = importlib.import_module(module_name)
    saga = getattr(module, attr)
    children = tuple(getattr(module, "CHILDREN", ()))
    waits = list(saga.signals()) if hasattr(saga, "signals") else []  # a choreography: none
    outside = list(getattr(module, "EXTERNAL", {}))
    if not outside and (args.no_confirm or args.confirm_within is not None):
        flag = "--no-confirm" if args.no_confirm else "--confirm-within"
        print(f"error: {flag} applies to examples that take events from outside "
              f"(order_choreography_parallel); {args.example} takes none", file=sys.stderr)
        return 2
    window = args.confirm_within or (5.0 if args.no_confirm else None)
    if outside and window is not None:
        saga = module.with_window(window)
    child_steps = list(saga.children().values()) if hasattr(saga, "children") else []
    steps = {s.name: s for one in (saga, *children) for s in one.steps}
    if not waits and (args.no_approve or args.approve_after is not None):
        flag = "--no-approve" if args.no_approve else "--approve-after"
        print(f"error: {flag} applies to examples whose sagas wait for a signal "
              f"({', '.join(examples_with_waits())}); {args.example} has none",
              file=sys.stderr)
        return 2
    if args.approve_after is None:
        args.approve_after = 1.0
    for flag, name in (("--fail-step", args.fail_step), ("--crash-step", args.crash_step),
                       ("--slow-step", args.slow_step)):
        if name is None:
            continue
        if name not in steps:
            print(f"error: {flag} {name!r} is not a step of {saga.name} "
                  f"(steps: {', '.join(steps)})", file=sys.stderr)
            return 2
        if not steps[name].participant:
            print(f"error: {flag} {name!r} calls no participant (it is a "
                  f"{'wait' if steps[name].signal else 'child'} step)"
                  + ("; use --no-approve to withhold its signal" if steps[name].signal else ""),
                  file=sys.stderr)
            return 2

    # inside `ray job submit` Ray sets RAY_ADDRESS: attach to that cluster
    args.address = args.address or os.environ.get("RAY_ADDRESS") or None
    configure_logging("launch", "WARNING" if args.json else "INFO")
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    try:
        runtime = SagaRuntime(
            sagas=[*children, saga], address=args.address, namespace=args.namespace,
            data_dir=args.data_dir, journal_url=args.journal, store_url=store_url(args),
            ray_init=ray_init_options(args),
        )
    except SagaError as exc:  # an unreachable cluster, a journal in a bad way
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.verbose:
        say(f"logs: {logs_folder()} (--verbose prints the actors' logs here)")
    say(f"journal: {runtime.config.journal}")
    say(f"stores: {runtime.config.store_url or runtime.config.data_dir + '/participants'}")

    faults: dict[str, dict[str, Fault]] = {}
    for flag_step, fault in ((args.fail_step, Fault(fail=True)),
                             (args.crash_step, Fault(delay_s=CRASH_DELAY_S)),
                             (args.slow_step, Fault(delay_s=args.slow_s))):
        if flag_step:
            step = steps[flag_step]
            faults.setdefault(step.participant, {})[step.action] = fault
    # {} clears faults a participant kept from an earlier run
    parts = module.PARTICIPANTS
    actors = runtime.deploy_many(parts, faults={c.name: faults.get(c.name, {}) for c in parts})
    before = snapshot(actors)

    started = time.monotonic()
    if args.resume:
        ids = [r.saga_id for r in runtime.journal.non_terminal() if r.saga_type == saga.name]
        runtime.services()  # the supervisor recovers every unfinished saga as it starts
        say(f"resuming {len(ids)} unfinished {saga.name} saga(s) from the journal")
    else:
        run_tag = f"{int(time.time() * 1000):x}"
        ids = [
            runtime.start(saga.name, module.sample_input(n), saga_id=f"{saga.name}-{run_tag}-{n}",
                          placement=args.placement)
            for n in range(args.count)
        ]
        say(f"launched {len(ids)} {saga.name} saga(s) in {time.monotonic() - started:.1f}s")
        if waits and not args.no_approve:
            threading.Timer(args.approve_after, send_signals,
                            (runtime, module, ids, waits, say)).start()
        elif waits:
            say(f"withholding {', '.join(waits)}: the waits will time out")
        if outside and not args.no_confirm:
            threading.Timer(args.confirm_after, send_outside_events,
                            (runtime, module, saga.name, ids, say)).start()
        elif outside:
            say(f"withholding {', '.join(outside)}: the window will pass")

    if args.no_wait:
        report = {"sagas": [{"saga_id": i, "saga_type": saga.name, "status": "LAUNCHED"}
                            for i in ids], "address": args.address,
                  "namespace": runtime.config.namespace}
        if args.json:
            print(json.dumps(report), file=stdout)
        else:
            print("\n".join(ids))
            print(f"see them with: saga-actors --address {args.address} list")
        return 0

    killed: set[str] = set()
    console = _console(stderr=args.json)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, disable=args.json)
    ended = bar.add_task("sagas ended", total=len(ids))
    finished: set[str] = set()

    def progress(record: SagaRecord) -> None:
        if (args.crash_step and record.saga_id not in killed
                and args.crash_step in in_flight(record)):
            runner = (participant_actor_name(saga.step(args.crash_step).participant)
                      if record.placement == "choreography"
                      else runner_name(record, runtime.config.hosts))
            with contextlib.suppress(ValueError):  # already being restarted
                ray.kill(ray.get_actor(runner, runtime.config.namespace), no_restart=False)
            killed.add(record.saga_id)
            say(f"  killed {runner} while {record.saga_id} was in {args.crash_step}")
        if not args.json:
            where = record.current_step or (record.completed[-1] if record.completed else "-")
            console.print(f"  [{time.monotonic() - started:5.1f}s] {record.saga_id:<40} "
                          f"{record.status.value:<12} {where} (attempt {record.attempt})")
        if record.status.terminal and record.saga_id not in finished:
            finished.add(record.saga_id)
            bar.update(ended, completed=len(finished))

    try:
        with bar:
            records = runtime.wait_all(ids, timeout_s=args.timeout, on_progress=progress)
    finally:
        for actor in actors.values():  # leave shared participants clean
            ray.get(actor.set_faults.remote({}))
    after = snapshot(actors)
    effects: Counter[str] = Counter()
    with_children = [*ids, *(f"{i}/{step.name}" for i in ids for step in child_steps)]
    for name, actor in actors.items():
        for saga_id in with_children:
            for effect in ray.get(actor.ledger.remote(saga_id)):
                effects[f"{name}.{effect['method']}"] += 1

    report: dict[str, Any] = {
        "sagas": [
            {
                "saga_id": r.saga_id,
                "saga_type": r.saga_type,
                "status": r.status.value,
                "completed_steps": r.completed,
                "compensated_steps": r.compensated,
                "error": r.error,
            }
            for r in records
        ],
        "effects": dict(sorted(effects.items())),
        "participants": {"before": before, "after": after},
        "crashed": sorted(killed),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    if args.json:
        print(json.dumps(report), file=stdout)
    else:
        print_summary(report)
    return 0 if all(r.status is not SagaStatus.STUCK for r in records) else 1


def in_flight(record: SagaRecord) -> list[str]:
    """The actions in flight: a lone step's, or those of a parallel group's steps."""
    lone = ([record.current_step] if record.in_flight and record.phase == "action"
            and record.current_step else [])
    return lone + [name for name, b in record.branches.items() if b.in_flight]


def send_signals(runtime: SagaRuntime, module: Any, ids: list[str], names: list[str],
                 say: Any) -> None:
    """Send every signal the sagas wait for (``module.SIGNALS``: name -> payload of the
    n-th saga), each with a fixed id: sent again, it is taken once."""
    for n, saga_id in enumerate(ids):
        for name in names:
            try:
                runtime.signal(saga_id, name, module.SIGNALS[name](n),
                               signal_id=f"{saga_id}:{name}")
            except SagaError as exc:  # the saga ended before (it failed, it was cancelled)
                say(f"  {name} for {saga_id} not sent: {exc}")
    say(f"sent {', '.join(names)} to {len(ids)} saga(s)")


def send_outside_events(runtime: SagaRuntime, module: Any, choreography: str, ids: list[str],
                        say: Any) -> None:
    """Send the events from outside (``module.EXTERNAL``: event -> payload of the n-th
    saga) from a separate process, as a webhook would: scripts/webhook.py, attached to this
    cluster. Each has a fixed id (sent again, it is kept once) and no saga id: the saga is
    found by the event's correlation field."""
    lines = [json.dumps({"event": event, "payload": payload(n), "id": f"{saga_id}:{event}"})
             for n, saga_id in enumerate(ids) for event, payload in module.EXTERNAL.items()]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "webhook.py"), choreography,
         "--address", ray.get_runtime_context().gcs_address,
         "--namespace", runtime.config.namespace],
        input="\n".join(lines), capture_output=True, text=True, env=env, timeout=120)
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    refused = [a for a in answers if not a["ok"]]
    for a in refused:  # the saga ended before (it failed, it was cancelled)
        say(f"  {a['id']} not taken: {a['error']}")
    if proc.returncode != 0:
        say(f"  the webhook process failed: {proc.stderr[-500:]}")
    say(f"webhook sent {len(answers)} event(s) from outside, {len(refused)} refused")


def store_url(args: argparse.Namespace) -> str | None:
    if args.store_url or not (args.journal or "").startswith(("postgresql:", "postgres:")):
        return args.store_url
    return stores_beside(args.journal)


def snapshot(actors: dict[str, Any]) -> dict[str, Any]:
    """Business state worth comparing before and after: stock levels and money."""
    out: dict[str, Any] = {}
    if "inventory" in actors:
        out["stock"] = ray.get(actors["inventory"].stock_levels.remote())
    if "payment" in actors:
        out["payment"] = ray.get(actors["payment"].balance.remote())
    return out


def _console(*, stderr: bool = False) -> Console:
    """Fitted to a terminal; unwrapped when piped (one saga a line)."""
    tty = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, highlight=False, emoji=False, markup=False, soft_wrap=not tty,
                   width=None if tty else 1000)


def print_summary(report: dict[str, Any]) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for title in ("saga", "status", "completed / compensated", "reason"):
        table.add_column(title, overflow="fold")
    for s in report["sagas"]:
        table.add_row(s["saga_id"], s["status"], f"{','.join(s['completed_steps']) or '-'}"
                      f" / {','.join(s['compensated_steps']) or '-'}", s["error"] or "")
    print()
    console = _console()
    if console.is_terminal:
        console.print(table)
    else:  # piped: no padding at line ends
        with console.capture() as captured:
            console.print(table)
        print("\n".join(line.rstrip() for line in captured.get().splitlines()))
    print("effects applied (from the participants' own ledgers):")
    for key, n in report["effects"].items():
        print(f"  {key:<36} {n}")
    before, after = report["participants"]["before"], report["participants"]["after"]
    for key in before:
        print(f"{key}: before {before[key]}\n{' ' * len(key)}  after  {after[key]}")
    print(f"\ndone in {report['elapsed_s']:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
