"""Ray metrics (``ray.util.metrics``): Prometheus, the dashboard's metrics view, and the
Grafana dashboard shipped in :mod:`saga_actors.ops.grafana`.

Names appear on Ray's Prometheus endpoint with Ray's ``ray_`` prefix, for example
``ray_saga_actors_sagas{status="PENDING"}``. No per-saga labels: only the runtime's
namespace, status, saga type, kind and outcome, so the number of series stays small.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]


class RayMetrics:
    """The registry's :class:`~saga_actors.services.registry.Metrics`, backed by Ray. Every series
    carries the runtime's ``namespace``, so two runtimes on one cluster stay apart."""

    def __init__(self, namespace: str) -> None:
        self._sagas = Gauge("saga_actors_sagas", "Sagas by status.",
                            tag_keys=("namespace", "status"))
        self._outcomes = Counter(
            "saga_actors_sagas_total",
            "Sagas started, completed, failed and parked STUCK, by saga type.",
            tag_keys=("namespace", "saga_type", "outcome"),
        )
        self._steps = Counter(
            "saga_actors_steps_total",
            "Step and compensation attempts by outcome (succeeded, retried, timed_out, "
            "failed for good).",
            tag_keys=("namespace", "saga_type", "kind", "outcome"),
        )
        self._events = Counter(
            "saga_actors_choreography_total",
            "Choreography: handler deliveries, events published, sagas parked on a poison "
            "event.",
            tag_keys=("namespace", "saga_type", "what"),
        )
        self._step_latency = Histogram(
            "saga_actors_step_latency_seconds",
            "Time from a step's first attempt to its success.",
            boundaries=LATENCY_BUCKETS,
            tag_keys=("namespace", "saga_type"),
        )
        self._saga_latency = Histogram(
            "saga_actors_saga_latency_seconds",
            "Time from a saga's start to its terminal state.",
            boundaries=LATENCY_BUCKETS,
            tag_keys=("namespace", "saga_type", "status"),
        )
        for metric in (self._sagas, self._outcomes, self._steps, self._events,
                       self._step_latency, self._saga_latency):
            metric.set_default_tags({"namespace": namespace})

    def sagas_by_status(self, counts: dict[str, int]) -> None:
        for status, n in counts.items():
            self._sagas.set(n, tags={"status": status})

    def saga_outcome(self, saga_type: str, outcome: str, *, n: int = 1) -> None:
        self._outcomes.inc(n, tags={"saga_type": saga_type, "outcome": outcome})

    def step_outcome(self, saga_type: str, kind: str, outcome: str, *, n: int = 1) -> None:
        self._steps.inc(n, tags={"saga_type": saga_type, "kind": kind, "outcome": outcome})

    def choreography(self, saga_type: str, what: str, *, n: int = 1) -> None:
        self._events.inc(n, tags={"saga_type": saga_type, "what": what})

    def step_latency(self, saga_type: str, seconds: float) -> None:
        self._step_latency.observe(seconds, tags={"saga_type": saga_type})

    def saga_latency(self, saga_type: str, status: str, seconds: float) -> None:
        self._saga_latency.observe(seconds, tags={"saga_type": saga_type, "status": status})
