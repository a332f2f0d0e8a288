"""What the registry counts for its metrics (and so for the Grafana dashboard), from the
transitions its feed carries: sagas started and ended by type, attempts by outcome (a
retried attempt apart from a last one, a timeout apart from both), choreography
deliveries and parked events."""

from __future__ import annotations

import uuid
from collections import Counter

from saga_actors.journal import open_journal
from saga_actors.model.events import Event
from saga_actors.model.records import SagaRecord, Transition, first_transition
from saga_actors.model.state import SagaStatus
from saga_actors.services.registry import Registry, RegistryEntry, feed_event


class CountingMetrics:
    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.latencies: list[tuple] = []

    def sagas_by_status(self, counts: dict[str, int]) -> None:
        self.calls["by_status", tuple(sorted(counts.items()))] += 1

    def saga_outcome(self, saga_type: str, outcome: str, *, n: int = 1) -> None:
        self.calls["saga", saga_type, outcome] += n

    def step_outcome(self, saga_type: str, kind: str, outcome: str, *, n: int = 1) -> None:
        self.calls["step", saga_type, kind, outcome] += n

    def choreography(self, saga_type: str, what: str, *, n: int = 1) -> None:
        self.calls["chor", saga_type, what] += n

    def step_latency(self, saga_type: str, seconds: float) -> None:
        self.latencies.append(("step", saga_type, seconds))

    def saga_latency(self, saga_type: str, status: str, seconds: float) -> None:
        self.latencies.append(("saga", saga_type, status, seconds))


def t(record: SagaRecord, event: Event, status: SagaStatus, step: str | None = None,
      **detail) -> Transition:
    return Transition(saga_id=record.saga_id, seq=1, at=1.0, event=event, status=status,
                      step=step, detail=detail)


def feed(registry: Registry, record: SagaRecord, *transitions: Transition) -> None:
    registry.ingest([{"entry": RegistryEntry.of(record).model_dump(mode="json"),
                      "events": [feed_event(x) for x in transitions]}])


def test_the_registry_counts_sagas_attempts_and_choreography_by_type_and_outcome():
    metrics = CountingMetrics()
    registry = Registry(open_journal(f"memory://{uuid.uuid4().hex}"), metrics=metrics)
    P, C, F, S = (SagaStatus.PENDING, SagaStatus.COMPENSATING, SagaStatus.FAILED,
                  SagaStatus.STUCK)

    order = SagaRecord(saga_id="o1", saga_type="order", created_at=10.0, updated_at=10.0)
    feed(registry, order, first_transition(order),
         t(order, Event.ACTION_SENT, P, "pay"),
         t(order, Event.ACTION_ATTEMPT_FAILED, P, "pay", error_type="StepTimeoutError",
           final=False),
         t(order, Event.ACTION_ATTEMPT_FAILED, P, "pay", error_type="ValueError", final=False),
         t(order, Event.STEP_SUCCEEDED, P, "pay", latency_s=0.25),
         t(order, Event.ACTION_ATTEMPT_FAILED, P, "ship", error_type="Declined", final=True),
         t(order, Event.COMPENSATION_ATTEMPT_FAILED, C, "pay", error_type="Boom", final=False),
         t(order, Event.STEP_COMPENSATED, C, "pay"))
    ended = order.model_copy(update={"status": F, "finished_at": 12.5})
    feed(registry, ended, t(ended, Event.SAGA_FAILED, F))

    flow = SagaRecord(saga_id="c1", saga_type="flow", placement="choreography",
                      created_at=20.0, updated_at=20.0)
    feed(registry, flow, first_transition(flow), t(flow, Event.ACTION_SENT, P, "reserve"),
         t(flow, Event.EVENT_PUBLISHED, P, "reserve"))
    done = flow.model_copy(update={"status": SagaStatus.COMPLETED, "finished_at": 21.0})
    feed(registry, done, t(done, Event.EVENT_PUBLISHED, SagaStatus.COMPLETED, "ship"))
    poison = SagaRecord(saga_id="c2", saga_type="flow", placement="choreography",
                        status=S, created_at=30.0, updated_at=30.0, finished_at=31.0)
    feed(registry, poison, t(poison, Event.SAGA_STUCK, S, "reserve", error_type="Poison"))

    counted = {k: n for k, n in metrics.calls.items() if k[0] != "by_status"}
    assert counted == {
        ("saga", "order", "started"): 1, ("saga", "order", "failed"): 1,
        ("step", "order", "step", "timed_out"): 1, ("step", "order", "step", "retried"): 1,
        ("step", "order", "step", "succeeded"): 1, ("step", "order", "step", "failed"): 1,
        ("step", "order", "compensation", "retried"): 1,
        ("step", "order", "compensation", "succeeded"): 1,
        ("saga", "flow", "started"): 1, ("saga", "flow", "completed"): 1,
        ("saga", "flow", "stuck"): 1,
        ("chor", "flow", "delivered"): 1, ("chor", "flow", "published"): 2,
        ("chor", "flow", "parked"): 1,
    }
    assert ("step", "order", 0.25) in metrics.latencies
    assert ("saga", "order", "FAILED", 2.5) in metrics.latencies
    assert ("saga", "flow", "COMPLETED", 1.0) in metrics.latencies


def test_the_registry_holds_only_open_sagas_and_answers_for_finished_ones_from_the_journal():
    journal = open_journal(f"memory://{uuid.uuid4().hex}")
    registry = Registry(journal)

    def run(saga_id: str, status: SagaStatus, at: float) -> SagaRecord:
        rec = SagaRecord(saga_id=saga_id, saga_type="order", created_at=at, updated_at=at)
        journal.create(rec, first_transition(rec))
        done = rec.model_copy(update={"status": status, "seq": 1, "updated_at": at + 1})
        journal.commit(done, Transition(saga_id=saga_id, seq=1, at=at + 1,
                                        event=Event.SAGA_COMPLETED, status=status))
        feed(registry, rec, first_transition(rec))
        feed(registry, done)
        return done

    for i in range(500):
        run(f"done-{i:03}", SagaStatus.COMPLETED if i % 5 else SagaStatus.FAILED, float(i))
    stuck = run("stuck", SagaStatus.STUCK, 1000.0)
    live = SagaRecord(saga_id="live", saga_type="order", status=SagaStatus.PENDING,
                      created_at=1001.0, updated_at=1001.0)
    journal.create(live, first_transition(live))
    feed(registry, live)
    assert len(registry) == 2  # the STUCK one and the running one: nothing finished

    counts = registry.counts()
    assert (counts["COMPLETED"], counts["FAILED"], counts["STUCK"], counts["PENDING"]) == (
        400, 100, 1, 1)
    newest = registry.list(limit=3)
    assert [e["saga_id"] for e in newest] == ["live", "stuck", "done-499"]
    failed = registry.list(status="FAILED", limit=1000)
    assert len(failed) == 100 and {e["status"] for e in failed} == {"FAILED"}
    assert [e["saga_id"] for e in registry.list(status="STUCK")] == ["stuck"]
    assert registry.list(status="COMPLETED", limit=2, offset=1)[0]["saga_id"] == "done-498"

    # a late batch that says less than the registry knows changes nothing; a rebuild after
    # a restart reloads only the open sagas
    feed(registry, stuck.model_copy(update={"status": SagaStatus.PENDING, "seq": 0}))
    assert [e["saga_id"] for e in registry.list(status="STUCK")] == ["stuck"]
    late = journal.load("done-499").model_copy(update={"status": SagaStatus.PENDING, "seq": 0})
    feed(registry, late)  # finished, then news from before its end: it stays finished
    assert len(registry) == 2
    assert [e["saga_id"] for e in registry.list(status="PENDING")] == ["live"]
    assert Registry(journal).rebuild() == 2
