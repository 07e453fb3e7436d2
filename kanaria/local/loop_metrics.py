"""The control loop's own metrics, served by ``kanaria up`` on 127.0.0.1.

The same names and labels as the operator's (:mod:`kanaria.metric_names`,
``namespace`` empty locally), so the alert rules and dashboard queries of the
monitoring pack work against the local Prometheus too. ``kanaria up`` adds its
own endpoint to Prometheus' targets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kanaria import metric_names as m
from kanaria.api import ModelDeploymentStatus, Phase
from kanaria.rollout import Decision

NAMESPACE = ""
"""Local runs have no namespace; the label is kept (empty) so queries match both."""


class LoopMetrics:
    """One registry per ``kanaria up``; :meth:`observe` updates it after each pass."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        r = self.registry
        self.phase = Gauge(
            m.ROLLOUT_PHASE, "1 for the current phase", ["namespace", "model", "phase"], registry=r
        )
        self.weight = Gauge(
            m.ROLLOUT_WEIGHT,
            "Weight decided by the engine per version (shadow: mirrored percent)",
            ["namespace", "model", "version", "role"],
            registry=r,
        )
        self.step = Gauge(
            m.ROLLOUT_STEP, "Index of the current canary step", ["namespace", "model"], registry=r
        )
        self.last_transition = Gauge(
            m.ROLLOUT_LAST_TRANSITION,
            "Unix time of the last phase or step change",
            ["namespace", "model"],
            registry=r,
        )
        self.measurements = Counter(
            m.ANALYSIS_MEASUREMENTS.removesuffix("_total"),
            "Gate measurements by verdict",
            ["namespace", "model", "metric", "verdict"],
            registry=r,
        )
        self.transitions = Counter(
            m.ROLLOUT_TRANSITIONS.removesuffix("_total"),
            "Rollout engine events (Promoted, RolledBack, ...)",
            ["namespace", "model", "event"],
            registry=r,
        )
        self.decision = Histogram(
            m.DECISION_LATENCY,
            "Seconds to gather observations, decide and apply one pass",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self._weights: set[tuple[str, str]] = set()
        self._key: tuple[str, int | None] | None = None

    def serve(self, port: int) -> None:
        """Expose ``/metrics`` on 127.0.0.1:``port`` (a daemon thread)."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def observe(self, decision: Decision, seconds: float, now: float) -> None:
        """Publish one pass: phase, weights by role, step, events, measurements, duration."""
        s: ModelDeploymentStatus = decision.status
        labels = (NAMESPACE, self.model)
        for phase in Phase:
            self.phase.labels(*labels, phase.value).set(1 if phase is s.phase else 0)
        roles = {lv.version: str(lv.role) for lv in s.versions}
        current = {(v, roles.get(v, "stable")): float(w) for v, w in s.weights.items()}
        if s.mirror is not None:
            current[(s.mirror.version, "shadow")] = s.mirror.percent
        for version, role in self._weights - current.keys():
            self.weight.remove(*labels, version, role)
        for (version, role), value in current.items():
            self.weight.labels(*labels, version, role).set(value)
        self._weights = set(current)
        self.step.labels(*labels).set(s.currentStep or 0)
        key = (str(s.phase), s.currentStep)
        if key != self._key:
            self.last_transition.labels(*labels).set(now)
            self._key = key
        for event in decision.events:
            self.transitions.labels(*labels, event.reason).inc()
        self.decision.observe(seconds)

    def measured(self, metric: str, verdict: str) -> None:
        self.measurements.labels(NAMESPACE, self.model, metric, verdict).inc()
