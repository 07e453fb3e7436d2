"""The automation ramp (issue 13): assist first, the threshold steps down on passing
analysis, a failing automation gate moves it back to the last safe step in one move
(no rollback), Inconclusive holds, and pause/promote/abort work as in every strategy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from kanaria.analysis.templates import band_labels, builtin_query
from kanaria.api import Builtin, Measurement, ModelDeploymentSpec, Phase, Verdict
from kanaria.local.view import render
from kanaria.rollout import Observations, VersionObservation, decide

from .rollout_sim import SUCCESS_GATE, Sim

AGREE = {"name": "agreement", "builtin": "reviewerAgreement", "min": 0.95}
RATE = {"name": "automated", "builtin": "automationRate", "min": 0.1}
RAMP = {
    "automation": {
        "steps": [
            {"analysis": {}},
            {"setThreshold": 0.97},
            {"analysis": {}},
            {"setThreshold": 0.9},
            {"analysis": {}},
        ]
    }
}


def ramp_spec(mode: str = "partial") -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v1", "uri": "file:///models/v1.onnx"},
            "replicas": 2,
            "strategy": RAMP,
            "automation": {"mode": mode, "threshold": 0.9},
            "analysis": {"interval": "30s", "metrics": [AGREE, SUCCESS_GATE]},
        }
    )


def started(mode: str = "partial") -> Sim:
    sim = Sim(ramp_spec(mode))
    sim.tick()  # v1 stable
    sim.with_version("v2")
    sim.tick()
    sim.tick()  # v2 Ready: all traffic, analysis from now
    return sim


def round_(sim: Sim, verdicts: dict[str, Verdict]) -> None:
    """One analysis round 30 s later with a verdict per gate."""
    sim.now += timedelta(seconds=30)
    ms = [
        Measurement(
            metric=r.gate.name,
            version=r.version,
            query="q",
            value=1.0,
            verdict=verdicts[r.gate.name],
            reason=f"test {verdicts[r.gate.name]}",
            time=sim.now,
        )
        for r in sim.requests()
        if r.purpose == "analysis"
    ]
    versions = {v.version: VersionObservation(ready=True) for v in sim.s.versions}
    d = decide(sim.spec, sim.status, Observations(versions=versions, measurements=ms), sim.now)
    sim.status = d.status
    sim.decisions.append(d)


OK = {"agreement": Verdict.Successful, "success": Verdict.Successful}


def test_starts_in_assist_with_all_traffic_on_the_candidate() -> None:
    sim = started()
    assert sim.s.stage == "Automating"
    assert sim.s.weights == {"v1": 0, "v2": 100}
    assert sim.s.automation is not None
    assert (sim.s.automation.mode, sim.s.automation.nextThreshold) == ("assist", 0.97)


def test_ramps_to_the_floor_then_promotes_with_it() -> None:
    sim = started()
    round_(sim, OK)
    assert sim.s.automation is not None
    assert (sim.s.automation.mode, sim.s.automation.threshold) == ("partial", 0.97)
    assert sim.s.automation.nextThreshold == 0.9
    round_(sim, OK)
    assert sim.s.automation.threshold == 0.9
    assert sim.s.automation.safeThreshold == 0.97
    round_(sim, OK)
    round_(sim, OK)
    assert sim.s.phase is Phase.Healthy
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v2"
    assert sim.s.automation.version == "v2"
    assert (sim.s.automation.mode, sim.s.automation.threshold) == ("partial", 0.9)


def test_full_mode_ends_fully_automated() -> None:
    sim = started("full")
    for _ in range(4):
        round_(sim, OK)
    assert sim.s.phase is Phase.Healthy
    assert sim.s.automation is not None
    assert sim.s.automation.mode == "full"


def test_failing_agreement_moves_back_to_the_safe_step_without_rollback() -> None:
    sim = started()
    round_(sim, OK)
    round_(sim, OK)  # 0.9 now, 0.97 safe
    assert sim.s.automation is not None
    assert sim.s.automation.threshold == 0.9
    round_(sim, {"agreement": Verdict.Failed, "success": Verdict.Successful})
    assert sim.s.automation.threshold == 0.97
    assert sim.s.automation.fallbacks == 1
    assert (sim.s.phase, sim.s.pauseReason) == (Phase.Paused, "ThresholdMovedBack")
    assert sim.s.weights == {"v1": 0, "v2": 100}  # no rollback
    assert "ThresholdMovedBack" in sim.reasons()
    resumed = sim.tick(command="resume").status
    assert resumed.phase is Phase.Progressing
    assert resumed.automation is not None
    assert resumed.automation.threshold == 0.97


def test_failing_agreement_in_the_first_step_stays_in_assist() -> None:
    sim = started()
    round_(sim, {"agreement": Verdict.Failed, "success": Verdict.Successful})
    assert sim.s.automation is not None
    assert sim.s.automation.mode == "assist"
    assert sim.s.phase is Phase.Paused


def test_failing_success_rolls_back_as_everywhere() -> None:
    sim = started()
    round_(sim, {"agreement": Verdict.Successful, "success": Verdict.Failed})
    assert sim.s.phase is Phase.RolledBack


def test_inconclusive_holds_the_threshold() -> None:
    sim = started()
    round_(sim, {"agreement": Verdict.Inconclusive, "success": Verdict.Successful})
    assert sim.s.automation is not None
    assert sim.s.automation.mode == "assist"
    assert sim.s.phase is Phase.Progressing


def test_promote_applies_the_next_threshold_and_abort_rolls_back() -> None:
    sim = started()
    sim.tick(command="promote")  # finishes the analysis step: 0.97 applies
    assert sim.s.automation is not None
    assert sim.s.automation.threshold == 0.97
    sim.tick(command="abort")
    assert sim.s.phase is Phase.RolledBack
    assert sim.s.weights == {"v1": 100}


def test_reviewer_agreement_is_asked_for_in_the_ramp_only() -> None:
    sim = started()
    sim.now += timedelta(seconds=30)
    assert {r.gate.name for r in sim.requests()} == {"agreement", "success"}


@pytest.mark.parametrize(
    ("automation", "steps", "expected"),
    [
        (None, [{"setThreshold": 0.9}], "needs spec.automation"),
        ({"mode": "assist"}, [{"setThreshold": 0.9}], "needs spec.automation"),
        ({"threshold": 0.95}, [{"setThreshold": 0.9}], "below automation.threshold"),
        ({}, [{"setThreshold": 0.9}, {"setThreshold": 0.95}], "must not increase"),
        ({}, [{"setThreshold": 0.95, "pause": {}}], "exactly one of"),
    ],
)
def test_bad_ramps_are_refused(
    automation: dict[str, object] | None, steps: list[dict[str, object]], expected: str
) -> None:
    data: dict[str, object] = {
        "model": {"version": "v1", "uri": "file:///m.onnx"},
        "strategy": {"automation": {"steps": steps}},
    }
    if automation is not None:
        data["automation"] = automation
    with pytest.raises(ValidationError, match=expected):
        ModelDeploymentSpec.model_validate(data)


def test_agreement_is_judged_on_the_band_automated_next() -> None:
    sim = started()
    sim.now += timedelta(seconds=30)
    bands = {r.gate.name: r.band for r in sim.requests()}
    assert bands["success"] is None
    low, high = bands["agreement"] or (0.0, 0.0)
    assert (low, high >= 1.0) == (0.97, True)  # assist: [0.97, 1]
    sim.now -= timedelta(seconds=30)
    round_(sim, OK)
    sim.now += timedelta(seconds=30)
    assert {r.gate.name: r.band for r in sim.requests()}["agreement"] == (0.9, 0.97)


def test_band_labels_cover_the_bands_that_overlap() -> None:
    assert band_labels((0.9, 0.97)) == ["0.90", "0.95"]
    assert band_labels((0.97, 1.0 + 1e-9)) == ["0.95"]
    assert band_labels((0.8, 0.9)) == ["0.80", "0.85"]
    query = builtin_query(Builtin.reviewerAgreement, "m", "v", None, "30s", band=(0.9, 0.97))
    assert 'band=~"0\\\\.90|0\\\\.95"' in query


def test_status_view_shows_the_degree_of_automation() -> None:
    sim = started()
    text = render("fraud", sim.spec, sim.s)
    assert "automation ramp: 0/5 steps done" in text
    assert "automation  assist on v2 (every answer reviewed); next step 0.97" in text
    round_(sim, OK)
    text = render("fraud", sim.spec, sim.s)
    assert "partial on v2 at confidence >= 0.97; next step 0.9" in text
    raw = sim.spec.model_dump(mode="json", exclude_none=True)
    raw["automation"]["spotCheck"] = 0.02
    spotted = render("fraud", ModelDeploymentSpec.model_validate(raw), sim.s)
    assert "at confidence >= 0.97, 2% of automated answers spot-checked" in spotted


def test_a_shadow_graduates_into_the_automation_ramp() -> None:
    """The degrees chain: shadow (nobody sees it) -> assist -> partial."""
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v1", "uri": "file:///models/v1.onnx"},
            "strategy": {"shadow": {"graduateTo": "automation", "duration": "30s", **RAMP}},
            "automation": {"mode": "partial", "threshold": 0.9},
            "analysis": {"interval": "30s", "metrics": [AGREE]},
        }
    )
    sim = Sim(spec)
    sim.tick()
    sim.with_version("v2")
    sim.tick()
    sim.tick()
    assert sim.s.stage == "Mirroring"
    graduated = sim.tick(seconds=31).status
    assert graduated.stage == "Automating"
    assert graduated.automation is not None
    assert graduated.automation.mode == "assist"
    assert "Graduated" in sim.reasons()
    with pytest.raises(ValidationError, match=r"needs spec\.automation"):
        ModelDeploymentSpec.model_validate(
            {**spec.model_dump(exclude_none=True), "automation": {"mode": "assist"}}
        )
