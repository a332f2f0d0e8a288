"""Ray metrics (``ray.util.metrics``): Prometheus and the dashboard's metrics view.

Names appear on Ray's Prometheus endpoint with Ray's ``ray_`` prefix, for example
``ray_saga_actors_sagas{status="PENDING"}``. No per-saga labels: only status, saga type,
kind and outcome, so the number of series stays small.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]


class RayMetrics:
    """The registry's :class:`~saga_actors.registry.Metrics`, backed by Ray."""

    def __init__(self) -> None:
        self._sagas = Gauge(
            "saga_actors_sagas", "Sagas by status.", tag_keys=("status",)
        )
        self._steps = Counter(
            "saga_actors_steps_total",
            "Step and compensation attempts by outcome.",
            tag_keys=("kind", "outcome"),
        )
        self._step_latency = Histogram(
            "saga_actors_step_latency_seconds",
            "Time from a step's first attempt to its success.",
            boundaries=LATENCY_BUCKETS,
            tag_keys=("saga_type",),
        )
        self._saga_latency = Histogram(
            "saga_actors_saga_latency_seconds",
            "Time from a saga's start to its terminal state.",
            boundaries=LATENCY_BUCKETS,
            tag_keys=("saga_type", "status"),
        )

    def sagas_by_status(self, counts: dict[str, int]) -> None:
        for status, n in counts.items():
            self._sagas.set(n, tags={"status": status})

    def step_outcome(self, kind: str, outcome: str) -> None:
        self._steps.inc(1, tags={"kind": kind, "outcome": outcome})

    def step_latency(self, saga_type: str, seconds: float) -> None:
        self._step_latency.observe(seconds, tags={"saga_type": saga_type})

    def saga_latency(self, saga_type: str, status: str, seconds: float) -> None:
        self._saga_latency.observe(seconds, tags={"saga_type": saga_type, "status": status})
