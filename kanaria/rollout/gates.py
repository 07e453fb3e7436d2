"""Which gates apply in which stage of a rollout (pure, like decide).

A gate only means something where its data exists: shadow agreement is measured
on mirrored copies, so it has no data once a graduated shadow gets real traffic
instead; asking for it there would hold the rollout Inconclusive for ever.
``spec.analysis.metrics[].stages`` names the stages a gate applies in; without
it, shadowAgreement applies while the candidate is mirrored (Mirroring, and a
blue-green Preview that mirrors) and every other gate applies in every stage
(traffic gates are read from the model server's metrics while the candidate
only gets mirrored or preview copies). ``plan_measurements`` asks only for the
applicable gates, and the engine's "needs a Successful round" rules look only
at them: a stage without applicable gates is gated like a rollout without
gates, by its pauses and by people.
"""

from __future__ import annotations

from datetime import datetime

from kanaria.api import (
    COMPARE_STAGES,
    ROLLOUT_STAGES,
    Builtin,
    Measurement,
    MetricGate,
    ModelDeploymentSpec,
    RolloutStage,
)
from kanaria.rollout.types import MeasurementRequest


def mirrored_stages(spec: ModelDeploymentSpec) -> frozenset[RolloutStage]:
    """Stages in which this spec sends the candidate mirrored copies of live requests."""
    out: set[RolloutStage] = set()
    strategy = spec.strategy
    if strategy.shadow is not None and strategy.shadow.mirrorPercent > 0:
        out.add("Mirroring")
    blue_green = strategy.blueGreen or (strategy.shadow.blueGreen if strategy.shadow else None)
    if blue_green is not None and blue_green.mirrorPercent > 0:
        out.add("Preview")
    return frozenset(out)


def gate_stages(gate: MetricGate, spec: ModelDeploymentSpec) -> frozenset[RolloutStage]:
    """The stages in which ``gate`` is measured: its ``stages``, or the default."""
    if gate.stages is not None:
        return frozenset(gate.stages)
    if gate.compare is not None:
        return both_served_stages(spec)
    if gate.builtin is Builtin.shadowAgreement:
        return mirrored_stages(spec)
    if gate.builtin in (Builtin.reviewerAgreement, Builtin.automationRate):
        return frozenset({"Automating"})  # only an automation ramp has a threshold to judge
    if spec.strategy.automation_ramp is None:
        return frozenset(s for s in ROLLOUT_STAGES if s != "Automating")
    return frozenset(ROLLOUT_STAGES)


def applicable_gates(spec: ModelDeploymentSpec, stage: RolloutStage | None) -> list[MetricGate]:
    """The gates measured and judged in ``stage`` (none outside a rollout), in spec order."""
    if stage is None:
        return []
    return [g for g in spec.analysis.metrics if stage in gate_stages(g, spec)]


def both_served_stages(spec: ModelDeploymentSpec) -> frozenset[RolloutStage]:
    """Stages in which both versions answer requests (the candidate through weight or
    mirrored copies): the default stages of a compare gate."""
    served: set[RolloutStage] = {"Steps", *mirrored_stages(spec)}
    return frozenset(served) & frozenset(COMPARE_STAGES)


def comparison_windows(spec: ModelDeploymentSpec) -> int:
    """How many times a rollout of this spec can start a compare gate's counts afresh:
    once per canary step and once more after the last (a step begins when the previous
    one ends), and once per Mirroring or Preview stage. Each window's test gets
    ``1/windows`` of the gate's error budget (a union bound over the windows), so a
    rollout as a whole stays within ``1 - confidence`` of false verdicts."""
    strategy = spec.strategy
    canary = strategy.canary or (strategy.shadow.canary if strategy.shadow else None)
    stages: set[RolloutStage] = set()
    for gate in spec.analysis.metrics:
        if gate.compare is not None:
            stages |= gate_stages(gate, spec)
    windows = 0
    if "Steps" in stages and canary is not None:
        windows += len(canary.steps) + 1
    windows += len(stages & {"Mirroring", "Preview"})
    return max(windows, 1)


class ComparisonRequest(MeasurementRequest):
    """A compare gate's request: the candidate and the stable, counted since ``since``.

    Carries what a comparison needs beyond a threshold gate's request (which version
    to compare with, where the window begins, and how many windows share the error
    budget), so threshold requests stay as they are."""

    against: str
    """The version compared with (the stable)."""
    since: datetime
    """Start of the counted window: when the current step or stage began."""
    windows: int = 1
    """Windows of this rollout sharing the gate's error budget."""


def analysis_request(
    spec: ModelDeploymentSpec,
    gate: MetricGate,
    version: str,
    stable: str | None,
    since: datetime | None,
    window: str,
    traffic: str,
) -> MeasurementRequest:
    """The request for one applicable gate: a :class:`ComparisonRequest` for a compare
    gate (which has no minRequests: its test decides when the data suffice), else the
    windowed threshold request."""
    kind = "server" if traffic == "server" else "router"
    if gate.compare is not None and stable is not None and since is not None:
        return ComparisonRequest(
            purpose="analysis",
            version=version,
            gate=gate,
            interval=window,
            traffic=kind,
            against=stable,
            since=since,
            windows=comparison_windows(spec),
        )
    return MeasurementRequest(
        purpose="analysis",
        version=version,
        gate=gate,
        interval=window,
        minRequests=spec.analysis.minRequests,
        traffic=kind,
    )


COLLECTING_FACTOR = 4
"""A compare gate is still collecting its planned sample until the candidate has this
many times the minimum sample size (which is planned for the gate's power, not for
certainty): until then an Inconclusive is the test working, not a stuck rollout."""


def collecting(m: Measurement) -> bool:
    """Is ``m`` a compare gate's Inconclusive while its planned sample builds up? Such a
    measurement holds the rollout but does not count towards inconclusiveLimit (which
    would pause for a person): a sequential test is expected to need many intervals at
    low traffic. Without any traffic, or past the plan, it counts as usual."""
    comparison = m.comparison
    if comparison is None or comparison.candidate.requests <= 0:
        return False
    if comparison.stable.requests <= 0:
        return False
    planned = comparison.minSampleSize
    return planned is not None and comparison.candidate.requests < COLLECTING_FACTOR * planned
