"""Property tests of the engine over random specs and random sequences of facts.

Each example deploys v1, changes spec.model to v2 (sometimes v3 later) and then
plays random passes: time moves on, versions flip between ready and not, gates
return random verdicts, people send random commands. After every pass the
invariants that make a rollout safe must hold.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanaria.api import (
    ROLLOUT_STAGES,
    Measurement,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    Verdict,
)
from kanaria.rollout import (
    COMMAND_VERBS,
    Command,
    Observations,
    VersionObservation,
    applicable_gates,
    decide,
    plan_measurements,
)
from tests.kanaria.rollout_sim import T0

DURATIONS = st.sampled_from([None, "30s", "60s", "2m"])
VERDICTS = st.sampled_from(list(Verdict))


@st.composite
def canary_strategies(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    weights = sorted(draw(st.lists(st.integers(0, 100), min_size=n, max_size=n)))
    steps: list[dict[str, Any]] = []
    for w in weights:
        kind = draw(st.sampled_from(["setWeight", "pause", "analysis"]))
        if kind == "setWeight":
            steps.append({"setWeight": w})
        elif kind == "pause":
            d = draw(DURATIONS)
            steps.append({"pause": {} if d is None else {"duration": d}})
        else:
            steps.append({"analysis": {"rounds": draw(st.integers(1, 3))}})
    return {"steps": steps}


@st.composite
def blue_green_strategies(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "autoPromote": draw(st.booleans()),
        "mirrorPercent": draw(st.sampled_from([0, 10, 100])),
        "scaleDownDelay": draw(st.sampled_from(["30s", "60s", "5m"])),
    }
    if draw(st.booleans()):
        out["prePromotionAnalysis"] = {"rounds": draw(st.integers(1, 3))}
    if draw(st.booleans()):
        out["postPromotionAnalysis"] = {"rounds": draw(st.integers(1, 3))}
    return out


@st.composite
def specs(draw: st.DrawFn) -> ModelDeploymentSpec:
    kind = draw(st.sampled_from(["canary", "blueGreen", "shadow"]))
    strategy: dict[str, Any]
    if kind == "canary":
        strategy = {"canary": draw(canary_strategies())}
    elif kind == "blueGreen":
        strategy = {"blueGreen": draw(blue_green_strategies())}
    else:
        graduate = draw(st.sampled_from(["none", "canary", "blueGreen"]))
        shadow: dict[str, Any] = {
            "mirrorPercent": draw(st.sampled_from([10, 50, 100])),
            "duration": draw(st.sampled_from(["30s", "2m"])),
            "analysis": {"rounds": draw(st.integers(1, 3))},
            "graduateTo": graduate,
        }
        if graduate == "canary":
            shadow["canary"] = draw(canary_strategies())
        if graduate == "blueGreen":
            shadow["blueGreen"] = draw(blue_green_strategies())
        strategy = {"shadow": shadow}
    n_gates = draw(st.integers(0, 2))
    metrics: list[dict[str, Any]] = []
    for i in range(n_gates):
        gate: dict[str, Any] = {
            "name": f"g{i}",
            "builtin": draw(st.sampled_from(["successRate", "shadowAgreement"])),
            "min": 0.9,
        }
        if draw(st.booleans()):  # explicit stages; otherwise the builtin's default
            gate["stages"] = draw(
                st.lists(st.sampled_from(ROLLOUT_STAGES), min_size=1, max_size=5, unique=True)
            )
        metrics.append(gate)
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v1", "uri": "file:///v1.onnx"},
            "replicas": draw(st.integers(1, 4)),
            "strategy": strategy,
            "analysis": {
                "interval": "30s",
                "metrics": metrics,
                "failureLimit": draw(st.integers(0, 2)),
                "inconclusiveLimit": draw(st.integers(0, 3)),
                "consecutiveErrorLimit": draw(st.integers(0, 3)),
            },
        }
    )


PASS = st.fixed_dictionaries(
    {
        "dt": st.sampled_from([0, 10, 30, 60, 300]),
        "stable_ready": st.booleans() | st.just(True),
        "candidate_ready": st.booleans() | st.just(True),
        "partial": st.booleans(),
        "verdicts": st.lists(VERDICTS, min_size=2, max_size=2),
        "command": st.none() | st.none() | st.none() | st.sampled_from(COMMAND_VERBS),
        "new_version": st.sampled_from([None] * 12 + ["v2", "v3", "v1"]),
        "swap_strategy": st.sampled_from([False] * 15 + [True]),
    }
)

MANUAL_MOVES = {"promote", "promote-full", "resume"}


def _with_model(spec: ModelDeploymentSpec, version: str) -> ModelDeploymentSpec:
    model = spec.model.model_copy(update={"version": version, "uri": f"file:///{version}.onnx"})
    return spec.model_copy(update={"model": model})


def _check(
    spec: ModelDeploymentSpec,
    before: ModelDeploymentStatus,
    after: ModelDeploymentStatus,
    obs: Observations,
    command: str | None,
    events: list[str],
) -> None:
    # Weights always sum to 100 over exactly the live versions.
    assert sum(after.weights.values()) == 100
    assert set(after.weights) == {v.version for v in after.versions}
    assert all(0 <= w <= 100 for w in after.weights.values())
    # The stable version keeps its full size until a promotion completes.
    assert after.stable is not None
    stable_live = [v for v in after.versions if v.version == after.stable.version]
    assert stable_live
    assert stable_live[0].replicas == spec.replicas
    # Every rollback ends at stable 100% with no mirror.
    if after.phase is Phase.RolledBack or "RolledBack" in events:
        assert after.weights == {after.stable.version: 100}
        assert after.mirror is None
    # An unready candidate never gets weight (nor mirrored traffic).
    cand = after.candidate
    if cand is not None and cand.version in after.weights:
        seen = obs.versions.get(cand.version)
        if seen is None or not seen.ready:
            assert after.weights[cand.version] == 0
            assert after.mirror is None
    # No automatic ramp-up or promotion follows a latest verdict that is not Successful,
    # when gates apply in the stage the move started from or ended in.
    gated = applicable_gates(spec, before.stage) or applicable_gates(spec, after.stage)
    if command not in MANUAL_MOVES and gated:
        same_candidate = (
            before.candidate is not None
            and cand is not None
            and before.candidate.version == cand.version
        )
        ramped = same_candidate and after.stepWeight > before.stepWeight
        promoted = bool({"Promoted", "Switched", "Graduated"} & set(events))
        if ramped or promoted:
            assert after.lastRoundVerdict in (None, Verdict.Successful), (events, after.message)
            if obs.measurements:
                assert all(m.verdict is Verdict.Successful for m in obs.measurements)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=specs(), other=specs(), passes=st.lists(PASS, min_size=1, max_size=40))
def test_rollout_invariants(
    spec: ModelDeploymentSpec, other: ModelDeploymentSpec, passes: list[dict[str, Any]]
) -> None:
    now = T0
    first = decide(spec, None, Observations(), now)
    status = first.status
    spec = _with_model(spec, "v2")
    for n, p in enumerate(passes):
        now += timedelta(seconds=p["dt"])
        if p["new_version"] is not None:
            spec = _with_model(spec, p["new_version"])
        if p["swap_strategy"]:  # an edit of spec.strategy in the middle of a rollout
            spec, other = (
                spec.model_copy(update={"strategy": other.strategy}),
                other.model_copy(update={"strategy": spec.strategy}),
            )
        stable = status.stable.version if status.stable else None
        versions: dict[str, VersionObservation] = {}
        for v in status.versions:
            if v.version == stable:
                versions[v.version] = VersionObservation(ready=p["stable_ready"])
            else:
                versions[v.version] = VersionObservation(
                    ready=p["candidate_ready"],
                    readyReplicas=1 if p["partial"] else None,
                )
        # Only the gates that apply in the current stage are asked for.
        applicable = {g.name for g in applicable_gates(spec, status.stage)}
        for r in plan_measurements(spec, status, now):
            assert r.purpose != "analysis" or r.gate.name in applicable
        measurements = [
            Measurement(
                metric=r.gate.name,
                version=r.version,
                verdict=p["verdicts"][i % 2],
                time=now,
            )
            for i, r in enumerate(plan_measurements(spec, status, now))
            if r.purpose == "analysis"
        ]
        command = Command(verb=p["command"], nonce=f"c{n}") if p["command"] is not None else None
        obs = Observations(versions=versions, measurements=measurements, command=command)
        decision = decide(spec, status, obs, now)
        # decide is deterministic and does not touch its inputs.
        assert decide(spec, status, obs, now) == decision
        events = [e.reason for e in decision.events]
        _check(spec, status, decision.status, obs, p["command"], events)
        status = decision.status


@given(spec=specs())
@settings(max_examples=50, deadline=None)
def test_status_round_trips_through_json(spec: ModelDeploymentSpec) -> None:
    """What the operator writes to the API server reads back as the same status."""
    d = decide(spec, None, Observations(), T0)
    d2 = decide(_with_model(spec, "v2"), d.status, Observations(), T0 + timedelta(seconds=1))
    text = d2.status.model_dump_json()
    assert ModelDeploymentStatus.model_validate_json(text) == d2.status


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(st.sampled_from([10, 30, 60, 120]), VERDICTS), min_size=1, max_size=60)
)
def test_retraining_requests_need_a_sustained_crossing_and_respect_the_cooldown(
    steps: list[tuple[int, Verdict]],
) -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v1", "uri": "file:///v1.onnx"},
            "strategy": {"blueGreen": {}},
            "retraining": {"threshold": 0.2, "duration": "2m", "cooldown": "10m"},
        }
    )
    now = T0
    status = decide(spec, None, Observations(), now).status
    ready = {"v1": VersionObservation(ready=True)}
    requested: list[Any] = []
    crossing_since: Any = None
    for dt, verdict in steps:
        now += timedelta(seconds=dt)
        (req,) = plan_measurements(spec, status, now) or (None,)
        m = None
        if req is not None:
            m = Measurement(metric=req.gate.name, version=req.version, verdict=verdict, time=now)
            if verdict is Verdict.Successful:
                crossing_since = None
            elif verdict is Verdict.Failed and crossing_since is None:
                crossing_since = now
        d = decide(spec, status, Observations(versions=ready, retraining=m), now)
        for a in d.actions:
            if a.type == "retrain":
                assert m is not None
                assert m.verdict is Verdict.Failed
                assert crossing_since is not None
                assert now - crossing_since >= timedelta(minutes=2)
                assert a.since == crossing_since
                requested.append(now)
        status = d.status
    for earlier, later in itertools.pairwise(requested):
        assert later - earlier >= timedelta(minutes=10)
