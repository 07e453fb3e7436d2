"""The control-loop metrics both actuators publish (kanaria.loop_metrics), on a fresh registry."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest

from kanaria import metric_names as names
from kanaria.api import LiveVersion, Measurement, ModelDeploymentStatus, Verdict, VersionRole
from kanaria.loop_metrics import PHASES, LoopMetrics, weights_by_role
from kanaria.rollout import Decision, Event, Observations

NS, MODEL = "ml", "fraud"
STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def status(**fields: object) -> ModelDeploymentStatus:
    base: dict[str, object] = {
        "phase": "Progressing",
        "currentStep": 2,
        "stepStartedAt": STARTED.isoformat(),
        "candidate": {"version": "v2", "uri": "u2"},
        "versions": [
            {"version": "v1", "uri": "u1", "role": "stable", "replicas": 2},
            {"version": "v2", "uri": "u2", "role": "candidate", "replicas": 1},
        ],
        "weights": {"v1": 70, "v2": 30},
        "mirror": {"version": "v3", "percent": 50.0},
    }
    return ModelDeploymentStatus.model_validate({**base, **fields})


def measured(metric: str, verdict: Verdict) -> Measurement:
    return Measurement(metric=metric, version="v2", verdict=verdict, time=STARTED)


class Reader:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.loop = LoopMetrics(self.registry)

    def __call__(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def series(self, name: str) -> list[dict[str, str]]:
        return [s.labels for f in self.registry.collect() for s in f.samples if s.name == name]


def test_a_pass_publishes_phase_weights_step_events_and_measurements() -> None:
    read = Reader()
    observations = Observations(
        measurements=[
            measured("success-rate", Verdict.Successful),
            measured("p99-latency", Verdict.Inconclusive),
        ],
        retraining=measured("retraining", Verdict.Successful),
    )
    decision = Decision(
        status=status(),
        events=[Event(type="Normal", reason="StepAdvanced", message="step 2")],
    )
    read.loop.record_pass(NS, MODEL, observations, decision, now=1_000.0)
    read.loop.observe_latency(0.2)

    ns = {"namespace": NS, "model": MODEL}
    assert {p: read(names.ROLLOUT_PHASE, **ns, phase=p) for p in PHASES} == {
        p: (1.0 if p == "Progressing" else 0.0) for p in PHASES
    }
    weight = names.ROLLOUT_WEIGHT
    assert read(weight, **ns, version="v1", role="stable") == 70
    assert read(weight, **ns, version="v2", role="candidate") == 30
    assert read(weight, **ns, version="v3", role="shadow") == 50
    assert read(names.ROLLOUT_STEP, **ns) == 2
    # first sight (e.g. a restarted loop): the step's start, not the pass' time
    assert read(names.ROLLOUT_LAST_TRANSITION, **ns) == STARTED.timestamp()
    assert read(names.ROLLOUT_TRANSITIONS, **ns, event="StepAdvanced") == 1
    verdicts = names.ANALYSIS_MEASUREMENTS
    assert read(verdicts, **ns, metric="success-rate", verdict="Successful") == 1
    assert read(verdicts, **ns, metric="p99-latency", verdict="Inconclusive") == 1
    assert read(verdicts, **ns, metric="retraining", verdict="Successful") == 1
    assert read(names.DECISION_LATENCY + "_count") == 1
    # every name of the contract is exposed, with exactly the documented labels
    text = generate_latest(read.registry).decode()
    for name in (
        names.ROLLOUT_PHASE,
        names.ROLLOUT_WEIGHT,
        names.ROLLOUT_STEP,
        names.ROLLOUT_LAST_TRANSITION,
        names.ROLLOUT_TRANSITIONS,
        names.ANALYSIS_MEASUREMENTS,
        names.DECISION_LATENCY + "_bucket",
    ):
        assert f"\n{name}{{" in text, name
    assert {tuple(sorted(s)) for s in read.series(weight)} == {
        ("model", "namespace", "role", "version")
    }


def test_later_passes_drop_stale_series_and_time_transitions_by_the_pass() -> None:
    read = Reader()
    ns = {"namespace": NS, "model": MODEL}
    read.loop.publish(NS, MODEL, status(), now=1_000.0)
    read.loop.publish(NS, MODEL, status(weights={"v1": 60, "v2": 40}), now=1_100.0)
    # same phase and step: the transition time stays
    assert read(names.ROLLOUT_LAST_TRANSITION, **ns) == STARTED.timestamp()

    promoted = status(
        phase="Healthy",
        currentStep=None,
        candidate=None,
        versions=[{"version": "v2", "uri": "u2", "role": "stable", "replicas": 2}],
        weights={"v2": 100},
        mirror=None,
    )
    read.loop.publish(NS, MODEL, promoted, now=1_200.0)
    assert read(names.ROLLOUT_LAST_TRANSITION, **ns) == 1_200.0
    assert read(names.ROLLOUT_PHASE, **ns, phase="Healthy") == 1
    assert read(names.ROLLOUT_PHASE, **ns, phase="Progressing") == 0
    assert read.series(names.ROLLOUT_WEIGHT) == [{**ns, "version": "v2", "role": "stable"}]
    assert read(names.ROLLOUT_STEP, **ns) is None  # no step: no made-up 0


def test_forget_drops_the_gauges_and_keeps_the_counters() -> None:
    read = Reader()
    ns = {"namespace": NS, "model": MODEL}
    decision = Decision(
        status=status(), events=[Event(type="Normal", reason="Promoted", message="done")]
    )
    read.loop.record_pass(NS, MODEL, Observations(), decision, now=1.0)
    read.loop.record_pass("", "other", Observations(), decision, now=1.0)
    read.loop.forget(NS, MODEL)
    for gauge in (
        names.ROLLOUT_PHASE,
        names.ROLLOUT_WEIGHT,
        names.ROLLOUT_STEP,
        names.ROLLOUT_LAST_TRANSITION,
    ):
        assert all(s["model"] == "other" for s in read.series(gauge)), gauge
        assert read.series(gauge), gauge
    assert read(names.ROLLOUT_TRANSITIONS, **ns, event="Promoted") == 1
    # forgetting twice, or a model never seen, is harmless
    read.loop.forget(NS, MODEL)
    read.loop.forget(NS, "never")


def test_roles_come_from_the_status_versions_then_the_candidate() -> None:
    s = status(
        versions=[LiveVersion(version="v1", uri="u1", role=VersionRole.stable, replicas=1)],
        weights={"v1": 80, "v2": 20, "v9": 0},
    )
    assert weights_by_role(s) == {
        ("v1", "stable"): 80.0,
        ("v2", "candidate"): 20.0,
        ("v9", "stable"): 0.0,
        ("v3", "shadow"): 50.0,
    }


def test_a_compare_gates_last_look_is_published_until_the_candidate_changes() -> None:
    """The dashboard's comparative panel reads the estimate, both interval ends and the
    limit; an end the look does not have is absent, not 0; a new candidate or the end
    of the rollout removes the old candidate's series."""
    read = Reader()
    ns = {"namespace": NS, "model": MODEL}

    def look(lower: float | None, upper: float | None, verdict: Verdict) -> Observations:
        evidence = {
            "test": "difference",
            "candidate": {"version": "v2", "requests": 900, "events": 27},
            "stable": {"version": "v1", "requests": 900, "events": 0},
            "estimate": 0.03,
            "lower": lower,
            "upper": upper,
            "limit": 0.01,
            "confidence": 0.975,
        }
        m = Measurement.model_validate(
            {
                "metric": "errors-vs-stable",
                "version": "v2",
                "verdict": verdict,
                "time": STARTED,
                "comparison": evidence,
            }
        )
        return Observations(measurements=[m, measured("success-rate", Verdict.Successful)])

    read.loop.record_pass(
        NS, MODEL, look(0.012, 0.05, Verdict.Failed), Decision(status=status()), 1.0
    )
    gauge = names.ANALYSIS_COMPARISON
    labels = {**ns, "metric": "errors-vs-stable", "version": "v2"}
    assert {
        q: read(gauge, **labels, quantity=q) for q in ("estimate", "lower", "upper", "limit")
    } == {
        "estimate": 0.03,
        "lower": 0.012,
        "upper": 0.05,
        "limit": 0.01,
    }
    assert all(s["metric"] == "errors-vs-stable" for s in read.series(gauge))  # threshold: none
    text = generate_latest(read.registry).decode()
    assert f"\n{gauge}{{" in text
    # a ratio's open upper end (infinite) is not a number to plot
    read.loop.record_pass(
        NS, MODEL, look(0.2, float("inf"), Verdict.Inconclusive), Decision(status=status()), 2.0
    )
    assert read(gauge, **labels, quantity="upper") is None
    assert read(gauge, **labels, quantity="lower") == 0.2
    # the rollout ended: nothing of v2 is left
    done = status(
        phase="Healthy", currentStep=None, candidate=None, weights={"v2": 100}, mirror=None
    )
    read.loop.record_pass(NS, MODEL, Observations(), Decision(status=done), 3.0)
    assert read.series(gauge) == []
    read.loop.record_pass(
        NS, MODEL, look(0.0, 0.1, Verdict.Inconclusive), Decision(status=status()), 4.0
    )
    read.loop.forget(NS, MODEL)
    assert read.series(gauge) == []
