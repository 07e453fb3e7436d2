"""The retraining watch on the stable version: pure bookkeeping for the engine.

The caller measures spec.retraining.metric on the stable version every analysis
interval (see :func:`kanaria.rollout.plan_measurements`); a Failed verdict means
the threshold is crossed (drift above, accuracy below). Crossing for
``duration`` raises the DriftDetected condition and, at most once per
``cooldown``, a Retrain action. Inconclusive and Error measurements change
nothing: missing data is neither drift nor recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kanaria.api import (
    Builtin,
    Measurement,
    MetricGate,
    ModelDeploymentStatus,
    Retraining,
    Verdict,
)
from kanaria.durations import parse_duration
from kanaria.rollout.types import Retrain

RETRAINING_METRIC = "retraining"
"""The ``metric`` name of retraining measurements in status."""


def retraining_gate(rt: Retraining) -> MetricGate:
    """The gate whose Failed verdict means "threshold crossed"."""
    if rt.metric == "inputDrift":
        return MetricGate(name=RETRAINING_METRIC, builtin=Builtin.inputDrift, max=rt.threshold)
    return MetricGate(name=RETRAINING_METRIC, builtin=Builtin.accuracy, min=rt.threshold)


@dataclass(frozen=True)
class RetrainOutcome:
    condition: tuple[bool, str, str] | None
    """(status, reason, message) for DriftDetected, or None to leave it."""
    action: Retrain | None
    action_message: str = ""


def track_retraining(
    rt: Retraining, status: ModelDeploymentStatus, m: Measurement, now: datetime
) -> RetrainOutcome:
    """Update ``status`` (driftSince, lastRetrainAt, lastRetrainCheckAt) for measurement ``m``."""
    status.lastRetrainCheckAt = now
    if m.verdict is Verdict.Successful:
        status.driftSince = None
        return RetrainOutcome((False, "WithinThreshold", m.reason), None)
    if m.verdict is not Verdict.Failed:
        return RetrainOutcome(None, None)
    since = status.driftSince or now
    status.driftSince = since
    held = (now - since).total_seconds()
    needed = parse_duration(rt.duration)
    if held < needed:
        return RetrainOutcome(None, None)
    message = (
        f"{rt.metric} on {m.version} crossed {rt.threshold:g} for {held:.0f}s "
        f"(value {m.value if m.value is not None else 'n/a'})"
    )
    last = status.lastRetrainAt
    if last is not None and (now - last).total_seconds() < parse_duration(rt.cooldown):
        return RetrainOutcome((True, "ThresholdCrossed", message), None)
    status.lastRetrainAt = now
    action = Retrain(
        version=m.version, metric=rt.metric, value=m.value, threshold=rt.threshold, since=since
    )
    return RetrainOutcome(
        (True, "ThresholdCrossed", message), action, f"retraining requested: {message}"
    )
