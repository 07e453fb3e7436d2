"""Which measurements the engine wants before its next pass (pure, like decide)."""

from __future__ import annotations

from datetime import datetime, timedelta

from kanaria.api import Builtin, ModelDeploymentSpec, ModelDeploymentStatus, Phase
from kanaria.durations import format_duration
from kanaria.rollout.gates import analysis_request, applicable_gates
from kanaria.rollout.pass_state import ACTIVE_PHASES, due
from kanaria.rollout.retrain import retraining_gate
from kanaria.rollout.stages import stage_of
from kanaria.rollout.types import MeasurementRequest


def with_band(request: MeasurementRequest, status: ModelDeploymentStatus) -> MeasurementRequest:
    """A reviewerAgreement request of an automation ramp judges the band the next
    setThreshold step automates: [next threshold, current threshold) (up to 1 in
    assist); past the last step, everything below the current threshold."""
    auto = status.automation
    if request.gate.builtin is not Builtin.reviewerAgreement or auto is None:
        return request
    high = 1.0 + 1e-9 if auto.mode == "assist" else auto.threshold
    low = auto.nextThreshold if auto.nextThreshold is not None else 0.0
    return request.model_copy(update={"band": (low, high)})


def plan_measurements(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus | None, now: datetime
) -> list[MeasurementRequest]:
    """Analysis requests for the candidate when a round is due, and the retraining
    request for the stable version when its check is due.

    A round is due one interval after the candidate first got traffic (or entered a
    stage that asks for analysis) and then every interval; it asks only for the gates
    that apply in the current stage (``kanaria.rollout.gates``). The caller measures
    each request (``kanaria.analysis.measure``) and passes the results to ``decide``.
    """
    if status is None:
        return []
    interval = spec.analysis.interval_seconds
    window = format_duration(interval)
    out: list[MeasurementRequest] = []
    cand = status.candidate
    gates = applicable_gates(spec, status.stage)
    stage = stage_of(status.stage)
    if status.phase in ACTIVE_PHASES and cand is not None and gates and due(status, interval, now):
        stable = status.stable.version if status.stable is not None else None
        out.extend(
            with_band(
                analysis_request(
                    spec,
                    gate,
                    cand.version,
                    stable,
                    status.stepStartedAt or status.analysisStartedAt,
                    window,
                    stage.traffic if stage is not None else "router",
                ),
                status,
            )
            for gate in gates
        )
    rt = spec.retraining
    if (
        rt is not None
        and status.stable is not None
        and status.phase is not Phase.Pending
        and (
            status.lastRetrainCheckAt is None
            or now - status.lastRetrainCheckAt >= timedelta(seconds=interval)
        )
    ):
        out.append(
            MeasurementRequest(
                purpose="retraining",
                version=status.stable.version,
                gate=retraining_gate(rt),
                interval=window,
            )
        )
    return out
