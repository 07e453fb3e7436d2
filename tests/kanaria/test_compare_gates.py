"""Compare gates from spec to verdict: validation, planning, measuring, holding.

Real parts throughout: the pydantic models, the engine's planner and round
keeping, and ``kanaria.analysis.measure`` over a metric source that answers from
counts kept in memory (what a Prometheus would return for the same PromQL), so
the gate code runs exactly as under ``kanaria up``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from kanaria.analysis import MetricQuery, measure
from kanaria.api import (
    Measurement,
    MetricGate,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    Verdict,
    VersionRef,
)
from kanaria.rollout import Observations, decide, plan_measurements
from kanaria.rollout.gates import ComparisonRequest, comparison_windows, gate_stages

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def spec(**analysis: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v2", "uri": "file:///m2.onnx"},
            "strategy": {
                "canary": {"steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 90}]}
            },
            "analysis": {
                "interval": "30s",
                "metrics": [
                    {"name": "errors", "builtin": "errorRate", "compare": {"margin": 0.005}}
                ],
                **analysis,
            },
        }
    )


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"builtin": "inputDrift", "compare": {"margin": 0.1}}, "compare needs builtin"),
        ({"builtin": "latencyDistribution", "max": 0.1}, "needs compare"),
        ({"builtin": "errorRate", "max": 0.1, "compare": {"margin": 0.1}}, "replaces min"),
        ({"builtin": "latencyP99", "compare": {"margin": 0.2, "relative": False}}, "always"),
        ({"builtin": "outputDistribution", "compare": {"margin": 0.1, "relative": True}}, "never"),
        ({"builtin": "errorRate", "compare": {"margin": 0, "relative": True}}, "above 0"),
        (
            {"builtin": "errorRate", "compare": {"margin": 0.1}, "stages": ["PostPromotion"]},
            "both versions",
        ),
    ],
)
def test_compare_rules(gate: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MetricGate.model_validate({"name": "g", **gate})


def test_compare_gates_apply_where_both_versions_get_traffic() -> None:
    s = spec()
    assert gate_stages(s.analysis.metrics[0], s) == frozenset({"Steps"})
    assert comparison_windows(s) == 4  # three steps and the hold after the last


def started() -> tuple[ModelDeploymentSpec, ModelDeploymentStatus]:
    s = spec()
    v1 = VersionRef(version="v1", uri="file:///m1.onnx")
    status = ModelDeploymentStatus(phase=Phase.Healthy, stable=v1, target=v1)
    ready = Observations(versions={"v1": {"ready": True}, "v2": {"ready": True}})
    status = decide(s, status, ready, T0).status
    status = decide(s, status, ready, T0 + timedelta(seconds=1)).status
    assert status.weight == 10
    return s, status


class CountsSource:
    """Answers count queries from ``{version: (requests, 5xx)}`` (as Prometheus would)."""

    def __init__(self, counts: dict[str, tuple[float, float]]) -> None:
        self.counts = counts
        self.windows: list[float] = []

    def measure(self, query: MetricQuery, at: datetime | None = None) -> float:
        self.windows.append(query.window_seconds)
        total, failed = self.counts[query.version]
        return failed if query.kind == "failed" else total


def round_at(
    s: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    source: CountsSource,
    at: datetime,
) -> tuple[ModelDeploymentStatus, list[Measurement]]:
    requests = plan_measurements(s, status, at)
    assert requests
    assert all(isinstance(r, ComparisonRequest) for r in requests)
    taken = [measure(source, r, "m", None, at) for r in requests]
    ready = Observations(
        versions={"v1": {"ready": True}, "v2": {"ready": True}},
        measurements=taken,
    )
    return decide(s, status, ready, at).status, taken


def test_requests_count_since_the_step_began_against_the_stable() -> None:
    s, status = started()
    at = T0 + timedelta(seconds=95)
    request = plan_measurements(s, status, at)[0]
    assert isinstance(request, ComparisonRequest)
    assert request.against == "v1"
    assert request.since == status.stepStartedAt
    assert request.windows == 4
    assert request.minRequests == 0
    source = CountsSource({"v2": (100, 1), "v1": (900, 9)})
    _, taken = round_at(s, status, source, at)
    assert source.windows
    assert all(w >= 94 for w in source.windows)
    m = taken[0]
    assert m.comparison is not None
    assert m.comparison.candidate.requests == 100
    assert m.comparison.minSampleSize is not None


def test_low_traffic_holds_without_pausing_and_a_worse_candidate_rolls_back() -> None:
    s, status = started()
    at = T0
    for i in range(6):  # collecting: Inconclusive, holds 10%, never pauses
        at += timedelta(seconds=31)
        status, taken = round_at(
            s, status, CountsSource({"v2": (50 * (i + 1), 1), "v1": (450 * (i + 1), 5)}), at
        )
        assert taken[0].verdict is Verdict.Inconclusive
        assert status.phase is Phase.Progressing
        assert status.weight == 10
    at += timedelta(seconds=31)
    status, taken = round_at(
        s, status, CountsSource({"v2": (20000, 400), "v1": (180000, 1800)}), at
    )
    assert taken[0].verdict is Verdict.Failed
    assert status.phase is Phase.RolledBack


def test_an_identical_candidate_moves_on() -> None:
    s, status = started()
    at = T0 + timedelta(seconds=31)
    status, taken = round_at(
        s, status, CountsSource({"v2": (20000, 200), "v1": (180000, 1800)}), at
    )
    assert taken[0].verdict is Verdict.Successful
    assert status.weight == 50


def test_the_embedded_source_answers_compare_queries_beyond_its_dense_ring() -> None:
    """kanaria up's embedded scraper: counts, 5xx, buckets and classes since a step that
    began before the dense ring (10 minutes) are read from the sparse snapshots."""
    from kanaria import metric_names as names
    from kanaria.local.embedded import EmbeddedSource
    from kanaria.local.scrape import Scraper, Series

    clock = [0.0]
    scraper = Scraper(clock=lambda: clock[0])
    scraper.set_targets({"router": "http://127.0.0.1:1/metrics"})

    def series(k: float) -> Series:
        labels = {"model": "m", "version": "v2"}
        out: Series = {
            (names.ROUTER_REQUESTS, frozenset({**labels, "code": "200"}.items())): 99 * k,
            (names.ROUTER_REQUESTS, frozenset({**labels, "code": "503"}.items())): k,
            (names.OUTPUT_CLASSES, frozenset({**labels, "output": "o", "class": "a"}.items())): k,
        }
        for le, share in (("0.1", 0.5), ("+Inf", 1.0)):
            key = (f"{names.ROUTER_LATENCY}_bucket", frozenset({**labels, "le": le}.items()))
            out[key] = 100 * k * share
        return out

    for k in range(0, 1201, 5):  # 20 minutes, a scrape every 5 s
        clock[0] = float(k)
        scraper.record("router", series(k), float(k))
    source = EmbeddedSource(scraper)
    since = T0
    request = ComparisonRequest(
        purpose="analysis",
        version="v2",
        gate=MetricGate(name="e", builtin="errorRate", compare={"margin": 0.01}),
        interval="30s",
        against="v1",
        since=since,
    )
    at = since + timedelta(seconds=900)  # 15 minutes: older than the dense ring
    from kanaria.analysis.measure import comparison_queries

    qs = comparison_queries(request, "m", None, at)["v2"]
    total = source.measure(qs["total"], at)
    failed = source.measure(qs["failed"], at)
    # The window starts at t=300 (1200 - 900); the first sparse snapshot inside it.
    assert total == pytest.approx(100 * (1200 - 300))
    assert failed == pytest.approx(1200 - 300)
    lat = MetricGate(name="l", builtin="latencyDistribution", compare={"margin": 0.05})
    out = MetricGate(name="o", builtin="outputDistribution", compare={"margin": 0.05})
    for gate, kind, key, value in ((lat, "buckets", "0.1", 50 * 900), (out, "classes", "a/o", 900)):
        q = comparison_queries(request.model_copy(update={"gate": gate}), "m", None, at)["v2"]
        assert source.measure_vector(q[kind], at)[key] == pytest.approx(value)
