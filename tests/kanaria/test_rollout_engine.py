# mypy: disable-error-code="comparison-overlap"
"""Focused tests of every engine transition, driven through the pure ``decide``."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from kanaria.api import Phase, Verdict
from kanaria.rollout import Observations, VersionObservation, decide
from tests.kanaria.rollout_sim import SUCCESS_GATE, T0, Sim, make_spec

CANARY = {
    "canary": {
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": "60s"}},
            {"setWeight": 50},
            {"pause": {}},
            {"setWeight": 80},
        ]
    }
}


def deployed(
    strategy: dict[str, Any], metrics: list[dict[str, Any]] | None = None, **kw: Any
) -> Sim:
    """v1 stable and Ready, then spec.model changed to v2."""
    sim = Sim(make_spec(strategy, metrics, **kw))
    sim.tick()
    sim.tick()
    assert sim.s.phase is Phase.Healthy
    sim.with_version("v2")
    return sim


def test_first_apply_makes_the_version_stable_at_100() -> None:
    sim = Sim(make_spec(CANARY))
    d = sim.tick()
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v1"
    assert sim.s.weights == {"v1": 100}
    assert sim.s.phase is Phase.Progressing  # not Ready yet: nothing observed
    # What runs follows from the status (the loop's effects: tests/kanaria/test_loop.py).
    assert [(v.version, v.uri, v.replicas) for v in d.status.versions] == [
        ("v1", "file:///models/v1.onnx", 2)
    ]
    assert d.actions == []
    sim.tick()
    assert sim.s.phase is Phase.Healthy
    assert {c.type: c.status for c in sim.s.conditions}["Available"] == "True"


def test_reapplying_an_unchanged_spec_does_nothing() -> None:
    sim = Sim(make_spec(CANARY))
    sim.tick()
    sim.tick()
    d = sim.tick(30)
    assert d.actions == []
    assert d.events == []
    assert d.nextPassAt is None  # nothing timed: only a change moves anything
    assert d.status == sim.decisions[-2].status


def test_decide_requires_an_aware_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(make_spec(CANARY), None, Observations(), datetime(2026, 1, 1))


def test_canary_without_gates_walks_the_steps_and_promotes() -> None:
    sim = deployed(CANARY)
    d = sim.tick()
    assert sim.s.phase is Phase.Progressing
    assert sim.s.weights == {"v1": 100, "v2": 0}  # v2 not Ready yet
    assert [(v.version, v.replicas) for v in d.status.versions] == [("v1", 2), ("v2", 1)]
    sim.tick()
    assert sim.s.weights == {"v1": 90, "v2": 10}
    assert sim.s.currentStep == 1
    d = sim.tick(59)
    assert sim.s.currentStep == 1
    assert d.nextPassAt == sim.now + timedelta(seconds=1)  # the moment the pause ends
    sim.tick(1)
    assert sim.s.phase is Phase.Paused
    assert sim.s.pauseReason == "PauseStep"
    assert sim.s.weights == {"v1": 50, "v2": 50}
    sim.tick(3600)
    assert sim.s.phase is Phase.Paused  # indefinite pause waits for a person
    d = sim.tick(command="promote")
    assert sim.s.phase is Phase.Healthy
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v2"
    assert sim.s.weights == {"v2": 100}
    assert [v.version for v in d.status.versions] == ["v2"]  # v1 dropped
    # The candidate was sized for the next weight (80% of 2 replicas) while at 50%.
    sizes = [[v.replicas for v in d.status.versions if v.version == "v2"] for d in sim.decisions]
    assert [n for n, _ in itertools.groupby(s[0] for s in sizes if s)] == [1, 2]
    assert "Promoted" in sim.reasons()


def test_canary_ramps_only_after_successful_rounds() -> None:
    sim = deployed(CANARY, [SUCCESS_GATE])
    sim.tick()
    sim.tick()
    assert sim.s.weight == 10
    assert sim.requests() == []  # first round is due one interval after traffic starts
    sim.now = sim.now.replace(second=30)
    assert [(r.version, r.traffic) for r in sim.requests()] == [("v2", "router")]
    sim.tick(0, verdict=Verdict.Inconclusive)
    assert sim.s.lastRoundVerdict is Verdict.Inconclusive
    sim.tick(30, verdict=Verdict.Inconclusive)
    assert sim.s.weight == 10  # pause is over but the last round was not Successful
    assert "holding" in sim.s.message
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.weight == 50
    assert sim.s.phase is Phase.Paused


def test_failed_verdicts_past_the_limit_roll_back_in_one_step() -> None:
    sim = deployed(CANARY, [SUCCESS_GATE], failureLimit=1)
    sim.tick()
    sim.tick()
    sim.tick(30, verdict=Verdict.Failed)
    assert sim.s.phase is Phase.Progressing
    assert sim.s.weight == 10
    assert sim.s.gates["success"].failed == 1
    d = sim.tick(30, verdict=Verdict.Failed)
    assert sim.s.phase is Phase.RolledBack
    assert sim.s.weights == {"v1": 100}
    assert [v.version for v in d.status.versions] == ["v1"]  # v2 dropped: the loop stops it
    assert "failureLimit 1" in sim.s.message
    assert sim.s.measurements[-1].verdict is Verdict.Failed
    assert d.events[-1].type == "Warning"
    assert d.events[-1].reason == "RolledBack"


def test_errors_past_the_consecutive_limit_roll_back() -> None:
    steps = {"canary": {"steps": [{"setWeight": 10}, {"analysis": {"rounds": 50}}]}}
    sim = deployed(steps, [SUCCESS_GATE], consecutiveErrorLimit=2)
    sim.tick()
    sim.tick()
    for _ in range(2):
        sim.tick(30, verdict=Verdict.Error)
        assert sim.s.phase is Phase.Progressing
    sim.tick(30, verdict=Verdict.Successful)  # a good round resets the count
    for _ in range(2):
        sim.tick(30, verdict=Verdict.Error)
    assert sim.s.phase is Phase.Progressing
    sim.tick(30, verdict=Verdict.Error)
    assert sim.s.phase is Phase.RolledBack
    assert "consecutiveErrorLimit 2" in sim.s.message


def test_inconclusive_past_the_limit_pauses_and_never_rolls_back() -> None:
    sim = deployed(CANARY, [SUCCESS_GATE], inconclusiveLimit=2)
    sim.tick()
    sim.tick()
    for _ in range(2):
        sim.tick(30, verdict=Verdict.Inconclusive)
    assert sim.s.phase is Phase.Progressing
    sim.tick(30, verdict=Verdict.Inconclusive)
    assert sim.s.phase is Phase.Paused
    assert sim.s.pauseReason == "InconclusiveAnalysis"
    for _ in range(10):
        sim.tick(30, verdict=Verdict.Inconclusive)
    assert sim.s.phase is Phase.Paused
    assert sim.s.weight == 10
    sim.tick(command="resume")
    assert sim.s.phase is Phase.Progressing
    assert sim.s.gates["success"].consecutiveInconclusive == 0
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.weight == 50


def test_failure_limit_zero_rolls_back_at_the_first_failure_and_is_the_default() -> None:
    assert make_spec(CANARY, [SUCCESS_GATE]).analysis.failureLimit == 0
    sim = deployed(CANARY, [SUCCESS_GATE], failureLimit=0)
    sim.tick()
    sim.tick()
    sim.tick(30, verdict=Verdict.Failed)
    assert sim.s.phase is Phase.RolledBack
    assert "failed 1x (failureLimit 0)" in sim.s.message


def test_failure_while_paused_still_rolls_back() -> None:
    sim = deployed(CANARY, [SUCCESS_GATE])
    sim.tick()
    sim.tick()
    sim.tick(command="pause")
    assert sim.s.phase is Phase.Paused
    assert sim.s.pauseReason == "Manual"
    sim.tick(30, verdict=Verdict.Failed)
    assert sim.s.phase is Phase.RolledBack


def test_unready_candidate_gets_no_weight_and_the_step_waits() -> None:
    sim = deployed(CANARY)
    sim.unready.add("v2")
    for _ in range(3):
        sim.tick(30)
        assert sim.s.weights == {"v1": 100, "v2": 0}
        assert sim.s.currentStep == 0
    sim.unready.clear()
    sim.tick()
    assert sim.s.weights == {"v1": 90, "v2": 10}
    sim.unready.add("v2")
    sim.tick()
    assert sim.s.weights == {"v1": 100, "v2": 0}


def test_abort_and_retry() -> None:
    sim = deployed(CANARY)
    sim.tick()
    sim.tick()
    sim.tick(command="abort")
    assert sim.s.phase is Phase.RolledBack
    assert sim.s.weights == {"v1": 100}
    assert sim.s.candidate is not None
    assert sim.s.candidate.version == "v2"
    nonce = sim.s.lastCommand
    before = sim.s
    d = sim.tick(30)  # the same spec again: nothing restarts
    assert sim.s.phase is Phase.RolledBack
    assert d.status.versions == before.versions
    d = sim.tick(command="retry")
    assert sim.s.lastCommand != nonce
    assert sim.s.phase is Phase.Progressing
    assert sim.s.currentStep == 0
    assert any(v.version == "v2" and v.replicas > 0 for v in d.status.versions)


def test_a_command_is_applied_once_per_nonce() -> None:
    sim = deployed(CANARY)
    sim.tick()
    sim.tick()
    sim.tick(command="pause")
    assert sim.status is not None
    obs = Observations(
        versions={"v1": {"ready": True}, "v2": {"ready": True}},
        command={"verb": "resume", "nonce": "same"},
    )
    once = decide(sim.spec, sim.status, obs, sim.now)
    assert once.status.phase is Phase.Progressing
    paused_again = once.status.model_copy(update={"phase": Phase.Paused})
    twice = decide(sim.spec, paused_again, obs, sim.now)
    assert twice.status.phase is Phase.Paused  # the same nonce is not applied again


def test_commands_that_do_not_apply_are_reported() -> None:
    sim = Sim(make_spec(CANARY))
    sim.tick()
    d = sim.tick(command="promote")
    assert d.events[-1].reason == "CommandIgnored"
    d = sim.tick(command="retry")
    assert d.events[-1].reason == "CommandIgnored"


def test_promote_full_skips_the_remaining_steps() -> None:
    sim = deployed(CANARY, [SUCCESS_GATE])
    sim.tick()
    sim.tick()
    sim.tick(command="promote-full")
    assert sim.s.phase is Phase.Healthy
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v2"


def test_promotion_waits_for_the_candidate_at_full_size() -> None:
    sim = deployed({"canary": {"steps": [{"setWeight": 50}]}})
    sim.tick()
    obs = Observations(versions={"v1": {"ready": True}, "v2": {"ready": True, "readyReplicas": 1}})
    d = decide(sim.spec, sim.status, obs, sim.now)
    assert d.status.phase is Phase.Promoting
    assert d.status.weights == {"v1": 50, "v2": 50}
    v2 = next(v for v in d.status.versions if v.version == "v2")
    assert v2.replicas == 2
    assert v2.replicas == 2
    sim.status = d.status
    sim.tick()
    assert sim.s.phase is Phase.Healthy
    assert sim.s.weights == {"v2": 100}


def test_new_version_mid_rollout_restarts_from_stable() -> None:
    sim = deployed(CANARY)
    sim.tick()
    sim.tick()
    assert sim.s.weight == 10
    sim.with_version("v3")
    d = sim.tick()
    assert sim.s.candidate is not None
    assert sim.s.candidate.version == "v3"
    assert sim.s.weights == {"v1": 100, "v3": 0}
    assert "v2" not in [v.version for v in d.status.versions if v.replicas > 0]
    assert "RolloutRestarted" in sim.reasons()


def test_spec_back_to_stable_cancels_the_rollout() -> None:
    sim = deployed(CANARY)
    sim.tick()
    sim.tick()
    sim.with_version("v1")
    sim.tick()
    assert sim.s.phase is Phase.Healthy
    assert sim.s.candidate is None
    assert sim.s.weights == {"v1": 100}


def test_reused_version_name_with_another_uri_is_refused() -> None:
    sim = Sim(make_spec(CANARY))
    sim.tick()
    model = sim.spec.model.model_copy(update={"uri": "file:///other.onnx"})
    sim.spec = sim.spec.model_copy(update={"model": model})
    d = sim.tick()
    assert d.events[-1].reason == "VersionReused"
    assert sim.s.candidate is None
    assert sim.s.stable is not None
    assert sim.s.stable.uri == "file:///models/v1.onnx"


def test_stable_not_ready_is_degraded() -> None:
    sim = Sim(make_spec(CANARY))
    sim.tick()
    sim.tick()
    sim.unready.add("v1")
    sim.tick()
    assert sim.s.phase is Phase.Degraded
    assert {c.type: c.status for c in sim.s.conditions}["Available"] == "False"


# ----------------------------------------------------------------------------- analysis step


def test_analysis_step_waits_for_its_rounds() -> None:
    sim = deployed(
        {"canary": {"steps": [{"setWeight": 20}, {"analysis": {"rounds": 2}}, {"setWeight": 60}]}},
        [SUCCESS_GATE],
    )
    sim.tick()
    sim.tick()
    assert sim.s.currentStep == 1
    assert sim.s.weight == 20
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.currentStep == 1
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.weight == 60


# ----------------------------------------------------------------------------- blue-green

BLUE_GREEN = {"blueGreen": {"scaleDownDelay": "60s", "postPromotionAnalysis": {"rounds": 1}}}


def test_blue_green_preview_switch_and_scale_down() -> None:
    sim = deployed(BLUE_GREEN, [SUCCESS_GATE])
    d = sim.tick()
    v2 = next(v for v in d.status.versions if v.version == "v2")
    assert (v2.uri, v2.replicas) == ("file:///models/v2.onnx", 2)
    assert sim.s.weights == {"v1": 100, "v2": 0}
    sim.tick()
    assert sim.s.phase is Phase.Promoting
    assert sim.s.stage == "PostPromotion"
    assert sim.s.weights == {"v1": 0, "v2": 100}
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v1"
    assert any(v.version == "v1" and v.replicas == 2 for v in sim.s.versions)
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.phase is Phase.Promoting  # scaleDownDelay not over
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.phase is Phase.Healthy
    assert sim.s.weights == {"v2": 100}
    assert [v.version for v in sim.decisions[-1].status.versions] == ["v2"]


def test_blue_green_post_promotion_failure_switches_back() -> None:
    sim = deployed(BLUE_GREEN, [SUCCESS_GATE])
    sim.tick()
    sim.tick()
    d = sim.tick(30, verdict=Verdict.Failed)
    assert sim.s.phase is Phase.RolledBack
    assert sim.s.weights == {"v1": 100}
    assert [(v.version, v.replicas) for v in d.status.versions if v.replicas > 0] == [("v1", 2)]


def test_blue_green_manual_with_mirror_and_pre_promotion() -> None:
    sim = deployed(
        {
            "blueGreen": {
                "autoPromote": False,
                "mirrorPercent": 50,
                "prePromotionAnalysis": {"rounds": 1},
            }
        },
        [SUCCESS_GATE],
    )
    sim.tick()
    sim.tick()
    assert sim.s.mirror is not None
    assert sim.s.mirror.percent == 50
    assert sim.s.weights == {"v1": 100, "v2": 0}
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.phase is Phase.Paused
    assert sim.s.pauseReason == "AwaitingPromotion"
    sim.tick(command="promote")
    assert sim.s.weights == {"v1": 0, "v2": 100}
    assert sim.s.mirror is None


# ----------------------------------------------------------------------------- shadow

AGREEMENT = {"name": "agreement", "builtin": "shadowAgreement", "min": 0.95}


def test_shadow_mirrors_then_stops_when_not_graduating() -> None:
    sim = deployed({"shadow": {"mirrorPercent": 25, "analysis": {"rounds": 2}}}, [AGREEMENT])
    sim.tick()
    sim.tick()
    assert sim.s.mirror is not None
    assert sim.s.mirror.percent == 25
    sim.now += timedelta(seconds=30)
    assert [r.traffic for r in sim.requests()] == ["server"]  # copies only reach the server
    sim.now -= timedelta(seconds=30)
    assert sim.s.weights == {"v1": 100, "v2": 0}
    sim.tick(30, verdict=Verdict.Successful)
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.phase is Phase.Healthy
    assert sim.s.candidate is None
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v1"
    assert "ShadowCompleted" in sim.reasons()
    sim.tick(command="retry")  # run spec.model again with the current strategy
    assert sim.s.phase is Phase.Progressing


def test_shadow_graduates_into_a_canary() -> None:
    sim = deployed(
        {
            "shadow": {
                "duration": "60s",
                "graduateTo": "canary",
                "canary": {"steps": [{"setWeight": 30}, {"pause": {}}]},
            }
        },
        [AGREEMENT],
    )
    sim.tick()
    sim.tick()
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.stage == "Mirroring"  # duration not over
    sim.tick(30, verdict=Verdict.Successful)
    assert sim.s.strategy == "canary"
    assert sim.s.mirror is None
    assert sim.s.weights == {"v1": 70, "v2": 30}
    assert "Graduated" in sim.reasons()


def test_shadow_failing_agreement_rolls_back() -> None:
    sim = deployed({"shadow": {"graduateTo": "none"}}, [AGREEMENT])
    sim.tick()
    sim.tick()
    sim.tick(30, verdict=Verdict.Failed)
    assert sim.s.phase is Phase.RolledBack
    assert sim.s.mirror is None


# ----------------------------------------------------------------------------- retraining


def test_drift_for_the_configured_time_requests_retraining_once_per_cooldown() -> None:
    spec = make_spec(CANARY).model_copy(deep=True)
    data = spec.model_dump()
    data["retraining"] = {"threshold": 0.2, "duration": "60s", "cooldown": "10m"}
    sim = Sim(type(spec).model_validate(data))
    sim.tick()
    sim.tick()
    assert [r.purpose for r in sim.requests()] == ["retraining"]
    sim.tick(0, retrain_verdict=Verdict.Failed, retrain_value=0.4)
    assert sim.s.driftSince == T0
    assert sim.requests() == []  # next check one interval later
    sim.tick(30, retrain_verdict=Verdict.Failed, retrain_value=0.4)
    d = sim.tick(30, retrain_verdict=Verdict.Failed, retrain_value=0.4)
    retrains = [a for a in d.actions if a.type == "retrain"]
    assert len(retrains) == 1
    assert retrains[0].value == 0.4
    assert retrains[0].version == "v1"
    assert {c.type: c.status for c in sim.s.conditions}["DriftDetected"] == "True"
    d = sim.tick(30, retrain_verdict=Verdict.Failed, retrain_value=0.4)
    assert not [a for a in d.actions if a.type == "retrain"]  # cooldown
    sim.tick(30, retrain_verdict=Verdict.Inconclusive)
    assert sim.s.driftSince is not None  # missing data is not recovery
    sim.tick(30, retrain_verdict=Verdict.Successful, retrain_value=0.1)
    assert sim.s.driftSince is None
    assert {c.type: c.status for c in sim.s.conditions}["DriftDetected"] == "False"


def test_strategy_removed_mid_rollout_holds_until_a_person_decides() -> None:
    sim = deployed(CANARY)
    sim.tick()
    sim.tick()
    assert sim.s.weight == 10
    sim.spec = make_spec({"blueGreen": {}}, version="v2")
    sim.tick(600)
    assert sim.s.phase is Phase.Progressing
    assert sim.s.weight == 10
    assert "no longer has the canary settings" in sim.s.message
    sim.tick(command="promote")
    assert sim.s.phase is Phase.Healthy
    assert sim.s.stable is not None
    assert sim.s.stable.version == "v2"


def test_replicas_edit_scales_the_stable_without_a_rollout() -> None:
    sim = Sim(make_spec(CANARY))
    sim.tick()
    sim.tick()
    sim.spec = sim.spec.model_copy(update={"replicas": 5})
    d = sim.tick()
    assert [(v.version, v.replicas) for v in d.status.versions] == [("v1", 5)]
    assert sim.s.phase is Phase.Healthy


def test_promote_finishes_only_the_current_step() -> None:
    steps = [{"setWeight": 10}, {"pause": {}}, {"analysis": {"rounds": 3}}, {"setWeight": 50}]
    sim = deployed({"canary": {"steps": steps}}, [SUCCESS_GATE])
    sim.tick()
    sim.tick()
    assert sim.s.phase is Phase.Paused
    sim.tick(command="promote")
    assert sim.s.currentStep == 2  # the analysis step still has to pass
    assert sim.s.weight == 10
    sim.tick(command="promote")
    assert sim.s.weight == 50  # skipping the analysis step applies the next weight now


def _with_server_args(sim: Sim, *args: str) -> None:
    server = sim.spec.server.model_copy(update={"args": list(args)})
    sim.spec = sim.spec.model_copy(update={"server": server})


def test_each_version_keeps_the_server_settings_it_started_with() -> None:
    """A faulty candidate's chaos flags reach its pods only: the stable keeps its own."""
    sim = deployed(CANARY)
    _with_server_args(sim, "--chaos-error-rate", "0.5")
    sim.tick()
    by_version = {v.version: v for v in sim.s.versions}
    assert by_version["v1"].server is not None
    assert by_version["v1"].server.args == []
    assert by_version["v2"].server is not None
    assert by_version["v2"].server.args == ["--chaos-error-rate", "0.5"]
    _with_server_args(sim, "--chaos-latency-ms", "5")  # mid-rollout: neither changes
    sim.tick(1)
    assert {v.version: v.server.args for v in sim.s.versions if v.server} == {
        "v1": [],
        "v2": ["--chaos-error-rate", "0.5"],
    }


def test_a_server_change_alone_reaches_the_stable_between_rollouts() -> None:
    sim = Sim(make_spec(CANARY))
    sim.tick()
    sim.tick()
    _with_server_args(sim, "--chaos-latency-ms", "5")
    d = sim.tick(1)
    assert [v.server.args for v in sim.s.versions if v.server] == [["--chaos-latency-ms", "5"]]
    assert [e.reason for e in d.events] == ["ServerSettingsApplied"]
    assert sim.s.phase is Phase.Healthy


def test_a_candidate_that_cannot_start_says_why_once_and_leaves_the_stable_alone() -> None:
    sim = deployed(CANARY)
    spec, status = sim.spec, sim.status
    problem = "CrashLoopBackOff (exit code 1: sha256 mismatch)"
    obs = Observations(
        versions={
            "v1": VersionObservation(ready=True),
            "v2": VersionObservation(ready=False, problem=problem),
        }
    )
    first = decide(spec, status, obs, sim.now)
    assert first.status.message == f"v2 cannot start: {problem}"
    assert [(e.reason, e.type) for e in first.events if e.reason == "VersionNotReady"] == [
        ("VersionNotReady", "Warning")
    ]
    assert first.status.weights == {"v1": 100, "v2": 0}
    again = decide(spec, first.status, obs, sim.now + timedelta(seconds=5))
    assert [e for e in again.events if e.reason == "VersionNotReady"] == []
    assert again.status.weights == {"v1": 100, "v2": 0}
