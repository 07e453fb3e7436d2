"""Gates that fit the stage of a rollout (``spec.analysis.metrics[].stages``).

The engine asks only for the gates that apply in the current stage, and only
those decide whether the rollout may move on. The two regressions from the demo:
a graduated canary judged by shadow agreement alone was held Inconclusive for
ever (agreement has no data once mirroring stops), and a shadow judged by a
traffic gate must be measured on the model server's metrics and decided by them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from kanaria.api import Measurement, ModelDeploymentSpec, Phase, Verdict
from kanaria.rollout import (
    Observations,
    VersionObservation,
    applicable_gates,
    decide,
    gate_stages,
)
from tests.kanaria.rollout_sim import SUCCESS_GATE, Sim, make_spec

AGREEMENT = {"name": "agreement", "builtin": "shadowAgreement", "min": 0.95}
GRADUATING = {
    "shadow": {
        "analysis": {"rounds": 2},
        "graduateTo": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "60s"}}]},
    }
}


def deployed(strategy: dict[str, Any], metrics: list[dict[str, Any]]) -> Sim:
    """v1 stable and Ready, then spec.model changed to v2 (the rollout starts, the
    candidate becomes Ready and analysis starts)."""
    sim = Sim(make_spec(strategy, metrics))
    sim.tick()
    sim.tick()
    assert sim.s.phase is Phase.Healthy
    sim.with_version("v2")
    sim.tick()
    sim.tick()
    return sim


def asked(sim: Sim, seconds: float = 30) -> list[tuple[str, str]]:
    """(gate, traffic) of the analysis requests due ``seconds`` from now."""
    sim.now += timedelta(seconds=seconds)
    try:
        return [(r.gate.name, r.traffic) for r in sim.requests() if r.purpose == "analysis"]
    finally:
        sim.now -= timedelta(seconds=seconds)


# ----------------------------------------------------------------------------- defaults


def test_defaults_agreement_only_while_mirrored_other_gates_everywhere() -> None:
    spec = make_spec(
        {"blueGreen": {"mirrorPercent": 0}}, [AGREEMENT, SUCCESS_GATE, {**AGREEMENT, "name": "a2"}]
    )
    agreement, success, _ = spec.analysis.metrics
    assert gate_stages(agreement, spec) == frozenset()  # blue-green without mirroring
    assert gate_stages(success, spec) == {
        "Mirroring",
        "Preview",
        "Steps",
        "Switching",
        "PostPromotion",
    }
    mirrored = make_spec({"blueGreen": {"mirrorPercent": 10}}, [AGREEMENT])
    assert gate_stages(mirrored.analysis.metrics[0], mirrored) == {"Preview"}
    shadow = make_spec(GRADUATING, [AGREEMENT])
    assert gate_stages(shadow.analysis.metrics[0], shadow) == {"Mirroring"}
    assert [g.name for g in applicable_gates(shadow, "Steps")] == []
    assert applicable_gates(shadow, None) == []


def test_explicit_stages_replace_the_default() -> None:
    spec = make_spec(
        GRADUATING,
        [AGREEMENT, {**SUCCESS_GATE, "stages": ["Steps", "Switching"]}],
    )
    assert [g.name for g in applicable_gates(spec, "Mirroring")] == ["agreement"]
    assert [g.name for g in applicable_gates(spec, "Steps")] == ["success"]
    assert [g.name for g in applicable_gates(spec, "PostPromotion")] == []


# ----------------------------------------------------------------------------- regressions


def test_graduated_canary_with_an_agreement_only_gate_progresses_to_promotion() -> None:
    """Regression: the canary asked for shadowAgreement, which has no data without
    mirroring, and was held Inconclusive (then paused) instead of promoting."""
    sim = deployed(GRADUATING, [AGREEMENT])
    assert asked(sim) == [("agreement", "server")]
    sim.tick(30, verdict=Verdict.Successful)
    sim.tick(30, verdict=Verdict.Successful)
    assert "Graduated" in sim.reasons()
    assert sim.s.stage == "Steps"
    assert sim.s.weights == {"v1": 50, "v2": 50}
    assert asked(sim) == []  # nothing applies in the canary: only its pause holds it
    # Even a late agreement result (no data now) must not hold or pause the canary.
    d = sim.tick(30, verdict=Verdict.Inconclusive)
    assert d.status.phase is Phase.Progressing
    sim.tick(31)
    assert sim.s.phase is Phase.Healthy
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v2"
    assert "Promoted" in sim.reasons()
    assert "Paused" not in sim.reasons()


@pytest.mark.parametrize("verdict", [Verdict.Successful, Verdict.Failed])
def test_shadow_with_traffic_and_agreement_gates_is_decided_by_both(verdict: Verdict) -> None:
    """Regression: a shadow's successRate is measured on the model server's metrics
    (the copies never reach the router's), and its verdict decides the shadow."""
    sim = deployed(
        {"shadow": {"analysis": {"rounds": 2}, "graduateTo": "none"}},
        [SUCCESS_GATE, AGREEMENT],
    )
    assert asked(sim) == [("success", "server"), ("agreement", "server")]
    sim.tick(30, verdict=verdict)
    if verdict is Verdict.Failed:
        assert sim.s.phase is Phase.RolledBack
        assert sim.s.weights == {"v1": 100}
        return
    sim.tick(30, verdict=verdict)
    assert sim.s.phase is Phase.Healthy
    assert "ShadowCompleted" in sim.reasons()
    assert {m.metric for m in sim.s.measurements} == {"success", "agreement"}


def test_traffic_gate_follows_the_candidate_from_mirror_to_router() -> None:
    sim = deployed(GRADUATING, [SUCCESS_GATE, AGREEMENT])
    sim.tick(30, verdict=Verdict.Successful)
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.stage == "Steps"
    assert asked(sim) == [("success", "router")]
    sim.tick(30, verdict=Verdict.Failed)
    assert sim.s.phase is Phase.RolledBack


def test_a_stage_without_gates_still_waits_for_its_own_rounds_elsewhere() -> None:
    """Steps-only gates: the shadow passes on its duration (no gate applies there),
    the canary is held until its gate passes."""
    spec_metrics = [{**SUCCESS_GATE, "stages": ["Steps"]}]
    strategy = {
        "shadow": {
            "duration": "30s",
            "graduateTo": "canary",
            "canary": {"steps": [{"setWeight": 20}, {"setWeight": 60}]},
        }
    }
    sim = deployed(strategy, spec_metrics)
    assert asked(sim) == []
    sim.tick(30)
    assert sim.s.weights == {"v1": 80, "v2": 20}
    sim.tick(30, verdict=Verdict.Inconclusive)
    assert sim.s.weights == {"v1": 80, "v2": 20}  # held: the gate applies here
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.weights == {"v1": 40, "v2": 60}


def test_measurements_of_gates_that_do_not_apply_are_ignored() -> None:
    sim = deployed(GRADUATING, [AGREEMENT])
    sim.tick(30, verdict=Verdict.Successful)
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.stage == "Steps"
    kept = len(sim.s.measurements)
    # The operator measured agreement anyway (an older plan): decide does not count it.
    stale = Measurement(metric="agreement", version="v2", verdict=Verdict.Failed, time=sim.now)
    ready = {v.version: VersionObservation(ready=True) for v in sim.s.versions}
    d = decide(sim.spec, sim.s, Observations(versions=ready, measurements=[stale]), sim.now)
    assert d.status.phase is Phase.Progressing
    assert len(d.status.measurements) == kept


# ----------------------------------------------------------------------------- the API


def _spec(metrics: list[dict[str, Any]], strategy: dict[str, Any]) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v1", "uri": "file:///v1.onnx"},
            "strategy": strategy,
            "analysis": {"metrics": metrics},
        }
    )


def test_stages_are_validated_with_clear_errors() -> None:
    canary = {"canary": {"steps": [{"setWeight": 50}]}}
    with pytest.raises(ValidationError, match="stages must not name a stage twice"):
        _spec([{**SUCCESS_GATE, "stages": ["Steps", "Steps"]}], canary)
    with pytest.raises(ValidationError, match="'Mirroring', 'Preview', 'Steps'"):
        _spec([{**SUCCESS_GATE, "stages": ["canary"]}], canary)
    with pytest.raises(ValidationError, match="at least 1 item"):
        _spec([{**SUCCESS_GATE, "stages": []}], canary)
    # A shadow that ends on its gates needs one that applies while mirroring.
    with pytest.raises(ValidationError, match="applies in the Mirroring stage"):
        _spec([{**SUCCESS_GATE, "stages": ["Steps"]}], {"shadow": {}})
    assert _spec([{**SUCCESS_GATE, "stages": ["Mirroring"]}], {"shadow": {}})
