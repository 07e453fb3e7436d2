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

from kanaria.api import (
    ROLLOUT_STAGES,
    Builtin,
    MetricGate,
    ModelDeploymentSpec,
    RolloutStage,
)


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
    if gate.builtin is Builtin.shadowAgreement:
        return mirrored_stages(spec)
    return frozenset(ROLLOUT_STAGES)


def applicable_gates(spec: ModelDeploymentSpec, stage: RolloutStage | None) -> list[MetricGate]:
    """The gates measured and judged in ``stage`` (none outside a rollout), in spec order."""
    if stage is None:
        return []
    return [g for g in spec.analysis.metrics if stage in gate_stages(g, spec)]
