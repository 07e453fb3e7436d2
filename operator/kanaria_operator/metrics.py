"""The operator's Prometheus metrics (names from kanaria.metric_names).

The Grafana dashboard and the alerts read these, so they are declared once
here and updated only by :mod:`kanaria_operator.reconcile`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from kanaria import metric_names as m
from kanaria.api import Phase

PHASES = tuple(p.value for p in Phase)

ROLLOUT_PHASE = Gauge(
    m.ROLLOUT_PHASE, "1 for the current phase of a ModelDeployment", ["namespace", "model", "phase"]
)
ROLLOUT_WEIGHT = Gauge(
    m.ROLLOUT_WEIGHT,
    "Weight decided by the engine per version (shadow: mirrored percent)",
    ["namespace", "model", "version", "role"],
)
ROLLOUT_STEP = Gauge(m.ROLLOUT_STEP, "Index of the current canary step", ["namespace", "model"])
ROLLOUT_LAST_TRANSITION = Gauge(
    m.ROLLOUT_LAST_TRANSITION,
    "Unix time of the last phase or step change",
    ["namespace", "model"],
)
ANALYSIS_MEASUREMENTS = Counter(
    m.ANALYSIS_MEASUREMENTS.removesuffix("_total"),
    "Gate measurements by verdict",
    ["namespace", "model", "metric", "verdict"],
)
ROLLOUT_TRANSITIONS = Counter(
    m.ROLLOUT_TRANSITIONS.removesuffix("_total"),
    "Rollout engine events (Promoted, RolledBack, ...)",
    ["namespace", "model", "event"],
)
DECISION_LATENCY = Histogram(
    m.DECISION_LATENCY,
    "Seconds to gather observations, decide and apply one pass",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


_weights_seen: dict[tuple[str, str], set[tuple[str, str]]] = {}
"""(namespace, model) -> (version, role) label pairs last published, to drop stale ones."""


def publish(
    namespace: str,
    model: str,
    phase: str,
    weights: dict[tuple[str, str], float],
    step: int | None,
    last_transition: float | None,
) -> None:
    """Set the gauges of one ModelDeployment after a pass; ``weights`` is keyed (version, role)."""
    for p in PHASES:
        ROLLOUT_PHASE.labels(namespace, model, p).set(1 if p == phase else 0)
    for (version, role), value in weights.items():
        ROLLOUT_WEIGHT.labels(namespace, model, version, role).set(value)
    key = (namespace, model)
    for stale in _weights_seen.get(key, set()) - set(weights):
        ROLLOUT_WEIGHT.remove(namespace, model, *stale)
    _weights_seen[key] = set(weights)
    if step is not None:
        ROLLOUT_STEP.labels(namespace, model).set(step)
    if last_transition is not None:
        ROLLOUT_LAST_TRANSITION.labels(namespace, model).set(last_transition)


def forget(namespace: str, model: str) -> None:
    """Drop the gauges of a deleted ModelDeployment so dashboards do not show ghosts."""
    for p in PHASES:
        ROLLOUT_PHASE.remove(namespace, model, p)
    for version, role in _weights_seen.pop((namespace, model), set()):
        ROLLOUT_WEIGHT.remove(namespace, model, version, role)
    for gauge in (ROLLOUT_STEP, ROLLOUT_LAST_TRANSITION):
        gauge.remove(namespace, model)
