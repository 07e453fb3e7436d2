"""The control loop's own metrics, declared once for both actuators of the engine.

The operator (one process, many ModelDeployments) and ``kanaria up`` (one model,
``namespace`` empty) publish the same names (:mod:`kanaria.metric_names`), label
sets and meanings, so the monitoring pack's alerts and dashboard read either.
Both call :meth:`LoopMetrics.record_pass` after a pass with what the pass saw and
decided; what a series means is therefore decided here, not in each caller:

- ``kanaria_rollout_phase{namespace, model, phase}``: 1 for the status' phase, 0
  for every other phase.
- ``kanaria_rollout_weight_percent{namespace, model, version, role}``: the
  engine's weight per version, ``role`` from ``status.versions`` (``stable`` or
  ``candidate``); the mirrored percent of a shadow with ``role="shadow"``. Series
  of versions no longer weighted are removed, so dashboards show no ghosts.
- ``kanaria_rollout_step{namespace, model}``: the canary step index while the
  status has one; removed when it has none (blue-green, shadow, before the first
  decision) rather than showing a made-up 0.
- ``kanaria_rollout_last_transition_timestamp_seconds{namespace, model}``: when
  the (phase, step) pair last changed; on first sight (a restarted loop) the
  status' ``stepStartedAt`` if any, so a restart does not look like a transition.
- ``kanaria_rollout_transitions_total{namespace, model, event}``: engine events.
- ``kanaria_analysis_measurements_total{namespace, model, metric, verdict}``:
  every measurement the pass took (analysis gates and the retraining check).
- ``kanaria_analysis_comparison{namespace, model, metric, version, quantity}``:
  a compare gate's last look at the candidate (quantity ``estimate``, ``lower``,
  ``upper``, ``limit``), so a dashboard shows the interval closing in on the
  limit, i.e. why the gate waited, passed or failed. An end the look does not have
  (no data yet; an open ratio) is removed rather than shown as a number. Series of
  a version that is no longer the candidate are removed.
- ``kanaria_decision_duration_seconds``: seconds per pass, observed by the caller
  (the operator also times passes that failed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from kanaria import metric_names as m
from kanaria.api import Measurement, ModelDeploymentStatus, Phase, VersionRole
from kanaria.rollout import Decision, Observations

PHASES = tuple(p.value for p in Phase)
LOCAL_NAMESPACE = ""
"""``kanaria up`` runs have no namespace; the label is kept (empty) so queries match both."""
SHADOW_ROLE = "shadow"
COMPARISON_QUANTITIES = ("estimate", "lower", "upper", "limit")
"""The ``quantity`` label values of the comparison gauge."""
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Seconds: a pass is a few API calls and Prometheus queries, slow ones take seconds."""


def weights_by_role(status: ModelDeploymentStatus) -> dict[tuple[str, str], float]:
    """(version, role) -> percent: the status' weights plus a shadow's mirrored percent.

    A weighted version missing from ``status.versions`` (not expected from the
    engine) is the candidate if ``status.candidate`` names it, else stable.
    """
    roles = {lv.version: lv.role.value for lv in status.versions}
    candidate = status.candidate.version if status.candidate is not None else None
    fallback = {candidate: VersionRole.candidate.value} if candidate is not None else {}
    weights = {
        (v, roles.get(v) or fallback.get(v, VersionRole.stable.value)): float(w)
        for v, w in status.weights.items()
    }
    if status.mirror is not None:
        weights[(status.mirror.version, SHADOW_ROLE)] = float(status.mirror.percent)
    return weights


def measurements_of(observations: Observations) -> Iterator[Measurement]:
    """Every measurement a pass took: the analysis gates', then the retraining check."""
    yield from observations.measurements
    if observations.retraining is not None:
        yield observations.retraining


class LoopMetrics:
    """The control-loop metrics on one registry (the process' default one unless given).

    Keeps, per (namespace, model), only what it needs to publish correctly: the
    weight series last set (to remove stale ones) and the last (phase, step) with
    its time. Losing that state (a restart) costs nothing but a re-derivation.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else REGISTRY
        self.registry = r
        ns_model = ["namespace", "model"]
        self.phase = Gauge(
            m.ROLLOUT_PHASE,
            "1 for the current phase of a ModelDeployment",
            [*ns_model, "phase"],
            registry=r,
        )
        self.weight = Gauge(
            m.ROLLOUT_WEIGHT,
            "Weight decided by the engine per version (shadow: mirrored percent)",
            [*ns_model, "version", "role"],
            registry=r,
        )
        self.step = Gauge(m.ROLLOUT_STEP, "Index of the current canary step", ns_model, registry=r)
        self.last_transition = Gauge(
            m.ROLLOUT_LAST_TRANSITION,
            "Unix time of the last phase or step change",
            ns_model,
            registry=r,
        )
        self.measurements = Counter(
            m.ANALYSIS_MEASUREMENTS.removesuffix("_total"),
            "Gate measurements by verdict",
            [*ns_model, "metric", "verdict"],
            registry=r,
        )
        self.transitions = Counter(
            m.ROLLOUT_TRANSITIONS.removesuffix("_total"),
            "Rollout engine events (Promoted, RolledBack, ...)",
            [*ns_model, "event"],
            registry=r,
        )
        self.comparison = Gauge(
            m.ANALYSIS_COMPARISON,
            "A compare gate's last look: estimate, interval ends and limit",
            [*ns_model, "metric", "version", "quantity"],
            registry=r,
        )
        self.latency = Histogram(
            m.DECISION_LATENCY,
            "Seconds to gather observations, decide and apply one pass",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._weights: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._phase_step: dict[tuple[str, str], tuple[str, int | None]] = {}
        self._compared: dict[tuple[str, str], set[tuple[str, str, str]]] = {}

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose this registry's ``/metrics`` on ``addr:port`` (a daemon thread)."""
        start_http_server(port, addr=addr, registry=self.registry)

    def record_pass(
        self,
        namespace: str,
        model: str,
        observations: Observations,
        decision: Decision,
        now: float,
    ) -> None:
        """Publish one pass: the new status' gauges, its events and its measurements.

        ``now`` is the pass' time (Unix seconds), used when the phase or step changed.
        """
        self.publish(namespace, model, decision.status, now)
        for event in decision.events:
            self.transitions.labels(namespace, model, event.reason).inc()
        for taken in measurements_of(observations):
            self.measurements.labels(namespace, model, taken.metric, taken.verdict.value).inc()
            self._record_comparison(namespace, model, taken)

    def _record_comparison(self, namespace: str, model: str, taken: Measurement) -> None:
        """Set a compare gate's gauges from one measurement (threshold gates have none)."""
        c = taken.comparison
        if c is None:
            return
        seen = self._compared.setdefault((namespace, model), set())
        values = {"estimate": c.estimate, "lower": c.lower, "upper": c.upper, "limit": c.limit}
        for quantity, value in values.items():
            series = (taken.metric, taken.version, quantity)
            if value is not None and math.isfinite(value):
                self.comparison.labels(namespace, model, *series).set(value)
                seen.add(series)
            elif series in seen:
                self.comparison.remove(namespace, model, *series)
                seen.discard(series)

    def _drop_comparisons(self, namespace: str, model: str, keep: str | None) -> None:
        """Remove the comparison series of every version but ``keep`` (the candidate)."""
        seen = self._compared.get((namespace, model), set())
        for series in [s for s in seen if s[1] != keep]:
            self.comparison.remove(namespace, model, *series)
            seen.discard(series)

    def publish(
        self, namespace: str, model: str, status: ModelDeploymentStatus, now: float
    ) -> None:
        """Set the gauges of one model from its status (see the module docstring)."""
        key = (namespace, model)
        candidate = status.candidate.version if status.candidate is not None else None
        self._drop_comparisons(namespace, model, candidate)
        for phase in PHASES:
            self.phase.labels(namespace, model, phase).set(1 if phase == status.phase.value else 0)
        weights = weights_by_role(status)
        for version, role in self._weights.get(key, set()) - weights.keys():
            self.weight.remove(namespace, model, version, role)
        for (version, role), value in weights.items():
            self.weight.labels(namespace, model, version, role).set(value)
        self._weights[key] = set(weights)
        if status.currentStep is not None:
            self.step.labels(namespace, model).set(status.currentStep)
        else:
            self.step.remove(namespace, model)
        phase_step = (status.phase.value, status.currentStep)
        seen = self._phase_step.get(key)
        if seen != phase_step:
            started = status.stepStartedAt
            when = started.timestamp() if seen is None and started is not None else now
            self.last_transition.labels(namespace, model).set(when)
            self._phase_step[key] = phase_step

    def observe_latency(self, seconds: float) -> None:
        """One pass took ``seconds`` (failed passes too: they cost the same wait)."""
        self.latency.observe(seconds)

    def forget(self, namespace: str, model: str) -> None:
        """Drop a deleted model's gauges so dashboards do not show ghosts.

        Counters stay: ``increase()`` over them must not see a reset to nothing.
        """
        key = (namespace, model)
        for phase in PHASES:
            self.phase.remove(namespace, model, phase)
        for version, role in self._weights.pop(key, set()):
            self.weight.remove(namespace, model, version, role)
        self.step.remove(namespace, model)
        self.last_transition.remove(namespace, model)
        self._phase_step.pop(key, None)
        self._drop_comparisons(namespace, model, None)
        self._compared.pop(key, None)
