"""Chaos run: many sagas under seeded faults and kills, then invariants from the evidence.

    python scripts/chaos.py [--sagas N] [--seed S] [--dedicated SHARE] [--json]
                            [--no-ray-restart] [--keep] [--journal URL] [--store-url URL]
                            [--cluster]

Runs N sagas (order fulfillment and trip booking, `dedicated` and `hosted` mixed, the
order as a choreography on the event bus, and the parallel order choreography whose
payment capture comes from outside: early, on time, twice, never, or after its saga ended)
on an embedded Ray with the SQLite journal (or --journal postgresql://..., with the stores
beside it) while injecting, at random from the seed:
declined payments (non-retryable), transient participant failures (retryable), slow
participants beyond their step timeout, kills of saga actors, SagaHosts, participant
actors and their replicas (each participant runs two), bus actors, the supervisor and the
registry, `scale` of a participant up and down mid-flight, and one whole-Ray restart
mid-flight (same journal). With --cluster it runs on a local `ray start` cluster instead,
with hosts="auto", and a node joins and later leaves mid-flight (no whole-Ray restart).
Then it checks, from the participants' own stores and the journal — not from what the
runtime reports:

  lost               sagas not terminal (COMPLETED, FAILED, or STUCK with a reason)
  duplicate_effects  an effect applied twice, or a business row without its ledger entry
  wrong_effects      COMPLETED with a compensation or a missing effect; FAILED with an
                     applied step left uncompensated, a compensation of nothing, or a pivot
  unbalanced         stock or money that does not add up to the ledgers
  mismatched         the registry disagrees with the journal
  outside            an event from outside taken twice, taken after its saga ended, or a
                     parallel order COMPLETED without its capture (or with it withheld)

--json prints one JSON object; the exit code is 1 if any invariant breaks, and then the
journal and the stores are kept (their folder is in the report as data_dir).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if "--cluster" in sys.argv:  # Ray reads it as it is imported: to attach to `ray start`'s
    os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray  # noqa: E402

from examples import (  # noqa: E402
    order_choreography,
    order_choreography_parallel,
    order_fulfillment,
    trip_booking,
)
from saga_actors import (  # noqa: E402
    RuntimeConfig,
    SagaError,
    SagaFinishedError,
    SagaRuntime,
    SagaStatus,
    configure_logging,
)
from saga_actors.constants import (  # noqa: E402
    bus_actor_name,
    host_actor_name,
    participant_actor_name,
)
from saga_actors.model.records import runner_name  # noqa: E402
from saga_actors.participant.stores import open_store, stores_beside  # noqa: E402
from saga_actors.ray.deployments import get_deployment  # noqa: E402
from saga_actors.ray.gateway import get_riding_restarts  # noqa: E402
from saga_actors.ray.services import find_services  # noqa: E402
from saga_actors.testing import Fault  # noqa: E402
from scripts.plots import chaos_plot, require_matplotlib  # noqa: E402

PARALLEL = "order_choreography_parallel"
CAPTURE_WINDOW_S = 30.0  # a withheld capture compensates its order this long after it began
EXAMPLES = {"order_fulfillment": order_fulfillment, "trip_booking": trip_booking,
            "order_choreography": order_choreography, PARALLEL: order_choreography_parallel}
DEFINITIONS = [order_fulfillment.ORDER_FULFILLMENT, trip_booking.TRIP_BOOKING,
               order_choreography.ORDER_CHOREOGRAPHY,
               order_choreography_parallel.with_window(CAPTURE_WINDOW_S)]
FORWARD = {name: [(s.participant, s.action, s.compensation, s.kind.value) for s in m_saga.steps]
           for name, m_saga in (("order_fulfillment", order_fulfillment.ORDER_FULFILLMENT),
                                ("trip_booking", trip_booking.TRIP_BOOKING))}
# a choreography's forward reactions: the last (shipping) has no compensation, so a
# FAILED choreographed saga must never have shipped (like a pivot)
for c in DEFINITIONS[2:]:
    FORWARD[c.name] = [
        (r.participant, r.handler,
         next((x.handler for x in c.reactions if x.compensates == r.name), None),
         "compensatable" if any(x.compensates == r.name for x in c.reactions) else "pivot")
        for r in c.reactions if r.kind == "action"]
PARTICIPANTS = {cls.name: cls for m in EXAMPLES.values() for cls in m.PARTICIPANTS}
REPLICAS = 2  # of each participant, at the start
INVARIANTS = ("lost", "duplicate_effects", "wrong_effects", "unbalanced", "mismatched",
              "outside")


def say(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.data_dir = tempfile.mkdtemp(prefix="saga-chaos-")
        self.ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        self.injected: Counter[str] = Counter()
        self.when: list[tuple[float, str]] = []  # (wall time, kind) of every fault, to plot
        self.rt: SagaRuntime | None = None
        self.webhook = Webhook(self.rng)
        self.cluster: Any = None
        if args.cluster:
            from tests.cluster import LocalCluster

            self.cluster = LocalCluster().start()

    # --- the cluster --------------------------------------------------------------------

    def up(self) -> SagaRuntime:
        os.environ["RAY_TMPDIR"] = self.ray_tmp
        if self.cluster is not None:
            ray.init(address=self.cluster.address, log_to_driver=False,
                     namespace="saga_actors_chaos")
        else:
            ray.init(include_dashboard=False, log_to_driver=False,
                     namespace="saga_actors_chaos", _temp_dir=self.ray_tmp)
        rt = SagaRuntime(sagas=DEFINITIONS,
                         data_dir=self.data_dir, journal_url=self.args.journal,
                         store_url=self.args.store_url,
                         log_level="ERROR", stall_grace_s=3.0,
                         restart_budget=20,
                         **({"hosts": "auto"} if self.cluster is not None else {}))
        for cls in PARTICIPANTS.values():  # two replicas each (killed and scaled below)
            rt.deploy(cls, replicas=REPLICAS)
        rt.services()
        self.rt = rt
        return rt

    def down(self, *, last: bool = False) -> None:
        if self.rt is not None:
            self.rt.close()
        ray.shutdown()
        if last and self.cluster is not None:
            self.cluster.stop()

    # --- launching ------------------------------------------------------------------------

    def inputs(self, n: int) -> list[tuple[str, dict, str]]:
        out = []
        for i in range(n):
            pick = self.rng.random()
            name = ("order_fulfillment" if pick < 0.4 else "trip_booking" if pick < 0.7
                    else "order_choreography" if pick < 0.85 else PARALLEL)
            payload = EXAMPLES[name].sample_input(i)
            if self.rng.random() < 0.15:
                payload["customer_id"] = "declined"  # the payment fails for good
                self.injected["declined_payment"] += 1
            placement = "dedicated" if self.rng.random() < self.args.dedicated else "hosted"
            out.append((name, payload, None if "choreography" in name else placement))
        return out

    # --- faults ---------------------------------------------------------------------------

    def _injected(self, kind: str) -> None:
        """Count a fault, and note when it came (for the plot)."""
        self.injected[kind] += 1
        self.when.append((time.time(), kind))

    def participant(self, name: str) -> Any:
        return ray.get_actor(participant_actor_name(name), self.rt.config.namespace)

    def kill_replica(self, name: str | None = None) -> None:
        """Another replica than the first, mid-call (Ray restarts it)."""
        ns = self.rt.config.namespace
        name = name or self.rng.choice(sorted(PARTICIPANTS))
        count = (get_deployment(ns, name) or {}).get("replicas", 1)
        if count > 1:
            i = self.rng.randrange(1, count)
            ray.kill(ray.get_actor(participant_actor_name(name, i), ns), no_restart=False)

    def scale_something(self, name: str | None = None, replicas: int | None = None) -> None:
        """A participant scaled up or down while sagas use it."""
        name = name or self.rng.choice(sorted(PARTICIPANTS))
        replicas = replicas or self.rng.choice([1, 2, 3])
        try:
            before = self.rt.scale(name, replicas)
            if before != replicas:
                self._injected("scale_up" if replicas > before else "scale_down")
        except Exception as exc:  # noqa: BLE001 - a restart under way: say it, go on
            say(f"  scale of {name} to {replicas} not done: {type(exc).__name__}: {exc}")

    def grow_or_shrink(self, i: int, n: int) -> None:
        """On --cluster: a node joins a third of the way in, and leaves at two thirds."""
        if self.cluster is None:
            return
        if i >= n // 3 and not self.cluster.worker_nodes and "node_added" not in self.injected:
            self.cluster.add_worker(num_cpus=2)
            self._injected("node_added")
        elif i >= 2 * n // 3 and self.cluster.worker_nodes:
            self.cluster.remove_worker(next(iter(self.cluster.worker_nodes)))
            self._injected("node_removed")

    def inject_fault(self) -> None:
        name = self.rng.choice(sorted(PARTICIPANTS))
        methods = PARTICIPANTS[name].handlers()
        method = self.rng.choice(sorted(methods))
        if self.rng.random() < 0.5:
            fault = Fault(fail=True, retryable=True, times=self.rng.randint(1, 2))
            kind = "transient_failure"
        else:
            fault = Fault(delay_s=12.0, times=1)  # past every step timeout (10 s)
            kind = "slow_participant"
        try:
            actor = self.participant(name)
            get_riding_restarts(lambda: actor.set_faults.remote({method: fault}), 10)
            self._injected(kind)
        except Exception as exc:  # noqa: BLE001 - the participant may be restarting
            say(f"  fault on {name}.{method} not set: {type(exc).__name__}")

    def kill_something(self, live_ids: list[str]) -> None:
        ns = self.rt.config.namespace
        target = self.rng.choice(["saga", "host", "bus", "participant", "replica",
                                  "supervisor", "registry"])
        try:
            if target == "saga" and live_ids:
                saga_id = self.rng.choice(live_ids)
                rec = self.rt.get(saga_id)
                name = runner_name(rec, self.rt.config.hosts)
                ray.kill(ray.get_actor(name, ns), no_restart=self.rng.random() < 0.5)
            elif target in ("host", "bus"):
                i = self.rng.randrange(self.rt.config.hosts)
                name = host_actor_name(i) if target == "host" else bus_actor_name(i)
                ray.kill(ray.get_actor(name, ns), no_restart=False)
            elif target == "participant":
                ray.kill(self.participant(self.rng.choice(sorted(PARTICIPANTS))),
                         no_restart=False)
            elif target == "replica":
                self.kill_replica()
            else:
                supervisor, registry = find_services(ns)
                actor = supervisor if target == "supervisor" else registry
                if actor is not None:
                    ray.kill(actor, no_restart=False)
            self._injected(f"kill_{target}")
        except (ValueError, ray.exceptions.RayError):
            pass  # it had just finished or is already being restarted

    # --- the run ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.began = time.time()
        started = time.monotonic()
        rt = self.up()
        ids: list[str] = []
        batches = self.inputs(self.args.sagas)
        restart_at = (len(batches) // 2 if self.args.ray_restart and self.cluster is None
                      else -1)
        step = max(1, len(batches) // 20)
        for i in range(0, len(batches), step):
            for name, payload, placement in batches[i:i + step]:
                ids.append(rt.start(name, payload, placement=placement))
                if name == PARALLEL:
                    self.webhook.schedule(ids[-1], payload["order_id"], self.injected)
            self.webhook.send_due(rt)
            live = [r.saga_id for r in rt.journal.non_terminal()]
            for _ in range(self.rng.randint(0, 2)):
                self.inject_fault()
            if self.rng.random() < 0.6:
                self.kill_something(live)
            if self.rng.random() < 0.25:
                self.scale_something()
            batch = i // step  # and each kind at least once: payment 3, a replica killed, 1
            if batch in (3, 6, 9):
                try:
                    if batch == 6:
                        self.kill_replica("payment")
                        self._injected("kill_replica")
                    else:
                        self.scale_something("payment", 3 if batch == 3 else 1)
                except (ValueError, ray.exceptions.RayError):
                    pass
            self.grow_or_shrink(i, len(batches))
            if restart_at >= 0 and i >= restart_at:
                restart_at = -1
                say(f"  whole-Ray restart with {len(live)} sagas unfinished")
                self.down()
                self._injected("ray_restart")
                rt = self.up()  # participants, then the supervisor, which recovers
            say(f"  launched {len(ids)}/{len(batches)}")
        for name in PARTICIPANTS:  # no new faults: let everything finish
            get_riding_restarts(lambda name=name: self.participant(name).set_faults.remote({}))
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            left = rt.journal.non_terminal()
            where = Counter(f"{r.placement} {r.status.value} {r.current_step or '-'}"
                            for r in left)
            say(f"  {len(left)} saga(s) still running"
                + (f": {', '.join(f'{n} {k}' for k, n in where.most_common(4))}" if left else ""))
            self.webhook.send_due(rt)
            if not left:
                break
            time.sleep(0.5)
        self.webhook.send_late(rt, self.injected)
        registry = self._registry_statuses()
        self.down(last=True)
        report = check(self.rt.config, ids, registry, self.webhook)
        self.ids = ids
        report.update(seed=self.args.seed, faults=dict(sorted(self.injected.items())),
                      seconds=round(time.monotonic() - started, 1))
        return report

    def _registry_statuses(self) -> dict[str, str]:
        """What the registry says of each saga, asked status by status (it answers the open
        ones from its memory, the finished ones from the journal): a saga it still holds
        as open after the journal finished it is listed twice, and reported as both."""
        _, registry = find_services(self.rt.config.namespace)
        deadline = time.monotonic() + 30
        while True:  # the registry is a cache: give it its resync interval to catch up
            said: dict[str, list[str]] = defaultdict(list)
            for status in SagaStatus:
                entries = get_riding_restarts(lambda s=status: registry.list.remote(
                    status=s.value, limit=1_000_000))
                for e in entries:
                    said[e["saga_id"]].append(e["status"])
            statuses = {i: "+".join(sorted(s)) for i, s in said.items()}
            journal = {r.saga_id: r.status.value for r in self.rt.journal.query()}
            if statuses == journal or time.monotonic() > deadline:
                return statuses
            time.sleep(1)


class Webhook:
    """The payment provider's capture webhook for the parallel orders: each order's
    capture is sent early (as its saga starts), on time, twice (the same event id), or
    never; and after the run, one more for finished orders, which must be refused."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pending: list[tuple[float, str, str, str]] = []  # due, saga, order, event id
        self.withheld: set[str] = set()
        self.late_taken: list[str] = []

    def schedule(self, saga_id: str, order_id: str, injected: Counter) -> None:
        pick = self.rng.random()
        if pick < 0.1:
            self.withheld.add(saga_id)
            injected["capture_withheld"] += 1
            return
        due = time.monotonic() + (0.0 if pick < 0.4 else self.rng.uniform(0.5, 5.0))
        injected["capture_early" if pick < 0.4 else "capture_on_time"] += 1
        self.pending.append((due, saga_id, order_id, f"{saga_id}:capture"))
        if self.rng.random() < 0.3:
            injected["capture_duplicate"] += 1
            self.pending.append((due + self.rng.uniform(0, 3), saga_id, order_id,
                                 f"{saga_id}:capture"))

    def _send(self, rt: SagaRuntime, order_id: str, event_id: str) -> None:
        payload = {"order_id": order_id, "capture_id": f"cap-{order_id}",
                   "captured_cents": 1999}
        rt.publish(PARALLEL, "PaymentCaptured", payload, event_id=event_id)

    def send_due(self, rt: SagaRuntime) -> None:
        now, left = time.monotonic(), []
        for due, saga_id, order_id, event_id in self.pending:
            if due > now:
                left.append((due, saga_id, order_id, event_id))
                continue
            try:
                self._send(rt, order_id, event_id)
            except SagaFinishedError:
                pass  # its saga ended first (a declined payment, a failure)
            except (SagaError, ray.exceptions.RayError):
                left.append((now + 1.0, saga_id, order_id, event_id))  # a restart: again
        self.pending = left

    def send_late(self, rt: SagaRuntime, injected: Counter) -> None:
        ended = [r.saga_id for r in rt.journal.query(saga_type=PARALLEL) if r.status.terminal]
        for saga_id in ended[:10]:
            record = rt.journal.load(saga_id)
            try:
                self._send(rt, record.input["order_id"], f"{saga_id}:late")
                self.late_taken.append(saga_id)
            except SagaFinishedError:
                injected["capture_late_refused"] += 1


# --- invariants, from the evidence ------------------------------------------------------


class Stores:
    """The participants' stores, read offline (SQLite files or PostgreSQL schemas)."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config

    def rows(self, participant: str, sql: str) -> list[tuple]:
        db = open_store(self.config.participant_store(participant), read_only=True).connect()
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


def check(config: RuntimeConfig, ids: list[str], registry: dict[str, str],
          webhook: Webhook) -> dict[str, Any]:
    from saga_actors.journal import open_journal

    journal = open_journal(config.journal, read_only=True)
    records = {i: journal.load(i) for i in ids}
    stores = Stores(config)
    applied: dict[str, Counter] = defaultdict(Counter)  # saga -> "participant.method" -> n
    for name in PARTICIPANTS:
        for saga_id, method, n in stores.rows(name,
                                        "SELECT saga_id, method, COUNT(*) FROM saga_effects "
                                        "WHERE status='applied' GROUP BY saga_id, method"):
            applied[saga_id][f"{name}.{method}"] += n
    problems: dict[str, list[str]] = defaultdict(list)
    by_status = Counter(r.status.value if r else "MISSING" for r in records.values())

    for saga_id, rec in records.items():
        if rec is None or not rec.status.terminal or (rec.status is SagaStatus.STUCK
                                                      and not rec.error):
            problems["lost"].append(saga_id)
            continue
        seen = applied.get(saga_id, Counter())
        for key, n in seen.items():
            if n > 1:
                problems["duplicate_effects"].append(f"{saga_id}: {key} x{n}")
        if rec.status is SagaStatus.STUCK:
            continue
        for participant, act, comp, kind in FORWARD[rec.saga_type]:
            did = seen[f"{participant}.{act}"]
            undone = seen[f"{participant}.{comp}"] if comp else 0
            if rec.status is SagaStatus.COMPLETED and (did != 1 or undone):
                problems["wrong_effects"].append(
                    f"{saga_id} COMPLETED: {act}={did} {comp}={undone}")
            if rec.status is SagaStatus.FAILED:
                if kind == "pivot" and did:
                    problems["wrong_effects"].append(f"{saga_id} FAILED after its pivot {act}")
                if comp and did != undone:
                    problems["wrong_effects"].append(
                        f"{saga_id} FAILED: {act}={did} {comp}={undone}")

    problems["outside"] += [f"{i}: a capture taken after it ended" for i in webhook.late_taken]
    for saga_id, rec in records.items():
        if rec is None or rec.saga_type != PARALLEL:
            continue
        taken = [e.external_id for e in rec.events if e.producer == "external"]
        if len(taken) != len(set(taken)):
            problems["outside"].append(f"{saga_id}: the same capture taken twice {taken}")
        if rec.status is SagaStatus.COMPLETED and (not taken or saga_id in webhook.withheld):
            problems["outside"].append(f"{saga_id}: COMPLETED, captures taken {taken}")
    problems["unbalanced"] += balance(stores, records, applied)
    for saga_id, rec in records.items():
        if rec is not None and registry.get(saga_id) != rec.status.value:
            problems["mismatched"].append(f"{saga_id}: registry {registry.get(saga_id)} "
                                          f"journal {rec.status.value}")
    journal.close()
    counts = {k: len(problems.get(k, [])) for k in INVARIANTS}
    return {"sagas": len(ids), "terminal": sum(1 for r in records.values()
                                               if r and r.status.terminal),
            **counts, "by_status": dict(sorted(by_status.items())),
            "examples": {k: v[:5] for k, v in problems.items() if v}}


def balance(stores: Stores, records: dict, applied: dict[str, Counter]) -> list[str]:
    """Stock and money recomputed from business tables must match the ledgers."""
    out = []
    from participants.inventory import DEFAULT_STOCK

    stock = dict(stores.rows("inventory", "SELECT sku, qty FROM stock"))
    held = Counter()
    for sku, qty in stores.rows("inventory",
                          "SELECT sku, qty FROM reservations WHERE released=0"):
        held[sku] += qty
    for sku, initial in DEFAULT_STOCK.items():
        if initial - stock.get(sku, initial) != held[sku]:
            out.append(f"stock {sku}: {initial} - {stock.get(sku)} != held {held[sku]}")
    reservations = Counter(s for (s,) in stores.rows("inventory",
                                               "SELECT DISTINCT saga_id FROM reservations"))
    for saga_id in reservations:
        if not applied[saga_id]["inventory.reserve_inventory"]:
            out.append(f"{saga_id}: reservation without a ledger entry")
    charges = stores.rows("payment", "SELECT saga_id, amount_cents FROM charges")
    refunds = dict(stores.rows("payment",
                         "SELECT c.saga_id, r.amount_cents FROM refunds r "
                         "JOIN charges c ON c.charge_id = r.charge_id"))
    per_saga = Counter(s for s, _ in charges)
    for saga_id, n in per_saga.items():
        ledger = (applied[saga_id]["payment.process_payment"]
                  + applied[saga_id]["payment.capture_payment"])
        if n != ledger:
            out.append(f"{saga_id}: {n} charge row(s), {ledger} in the ledger")
    kept = sum(a for _, a in charges) - sum(refunds.values())
    expected = sum(r.input["amount_cents"] for r in records.values()
                   if r is not None and r.status is SagaStatus.COMPLETED)
    stuck = sum(r.input["amount_cents"] for r in records.values()
                if r is not None and r.status is SagaStatus.STUCK)
    if not expected <= kept <= expected + stuck:
        out.append(f"money: kept {kept} cents, completed sagas charged {expected}")
    return out


def plot_run(chaos: Chaos, report: dict[str, Any], path: str) -> None:
    """The run's picture: sagas started and ended (from the journal) above the faults."""
    from saga_actors.journal import open_journal

    journal = open_journal(chaos.rt.config.journal, read_only=True)
    sagas = [(r.created_at, r.finished_at if r.status.terminal else None, r.status.value)
             for r in (journal.load(i) for i in chaos.ids) if r is not None]
    journal.close()
    chaos_plot(chaos.when, sagas, chaos.began, path,
               f"saga_actors chaos: {report['sagas']} sagas, seed {report['seed']}; lost "
               f"{report['lost']}, duplicate effects {report['duplicate_effects']}, "
               f"unbalanced {report['unbalanced']}")
    say(f"plot written to {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sagas", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to let sagas finish")
    p.add_argument("--dedicated", type=float, default=0.5, metavar="SHARE",
                   help="share of sagas given their own actor (the rest are hosted); "
                        "dedicated sagas start about 3 per second here")
    p.add_argument("--no-ray-restart", dest="ray_restart", action="store_false",
                   help="skip the whole-Ray restart")
    p.add_argument("--journal", metavar="URL", default=None,
                   help="journal URL (default: SQLite in the run's folder), e.g. "
                        "postgresql://postgres@127.0.0.1:5432/DB")
    p.add_argument("--store-url", metavar="URL", default=None,
                   help="the participants' stores (default: beside a PostgreSQL journal, "
                        "else SQLite files in the run's folder)")
    p.add_argument("--cluster", action="store_true",
                   help="run on a local ray start cluster (hosts=auto) that a node joins "
                        "and later leaves mid-flight, instead of an embedded Ray")
    p.add_argument("--keep", action="store_true",
                   help="keep the journal and participant stores (kept anyway on a failure)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the faults injected over time beside the sagas' progress "
                        "(needs the plot extra)")
    args = p.parse_args(argv)
    require_matplotlib(p, args.plot)
    if args.sagas < 1:
        p.error("--sagas must be at least 1")
    if not 0.0 <= args.dedicated <= 1.0:
        p.error("--dedicated must be between 0 and 1")
    if args.store_url is None and (args.journal or "").startswith("postgres"):
        args.store_url = stores_beside(args.journal)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # Ray may print to stdout
    configure_logging("chaos", "ERROR")
    chaos = Chaos(args)
    try:
        report = chaos.run()
    finally:  # (a run that broke off must not leave its ray start cluster running)
        if chaos.cluster is not None:  # (stop is a no-op once the run stopped it)
            chaos.cluster.stop()
    ok = not any(report[k] for k in INVARIANTS)
    report["ok"] = ok
    if args.plot:
        plot_run(chaos, report, args.plot)
    shutil.rmtree(chaos.ray_tmp, ignore_errors=True)
    if ok and not args.keep:
        shutil.rmtree(chaos.data_dir, ignore_errors=True)
    else:
        report["data_dir"] = chaos.data_dir  # the journal and the participants' stores
    print(json.dumps(report) if args.json else json.dumps(report, indent=2), file=stdout)
    return 0 if ok else 1


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
