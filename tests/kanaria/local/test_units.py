"""Unit tests of the local runtime's pure parts: state files, scraping maths, the
embedded source, the routes document, the status view and the report."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kanaria.analysis import measure
from kanaria.api import Builtin, MetricGate, ModelDeploymentSpec, ModelDeploymentStatus, Verdict
from kanaria.local import report, view
from kanaria.local.embedded import EmbeddedSource
from kanaria.local.scrape import Scraper, histogram_quantile, parse
from kanaria.local.statedir import (
    HistoryPoint,
    StateDir,
    append_command,
    atomic_write_text,
    complete_length,
    read_commands,
)
from kanaria.loop.routes import build_routes
from kanaria.rollout import MeasurementRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_commands_are_read_one_complete_line_at_a_time(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    first = append_command(d, "pause")
    second = append_command(d, "promote-full")
    with d.commands_file.open("a") as fh:
        fh.write('not json\n{"verb": "explode", "nonce": "x"}\n{"verb": "abort", "no')
    commands = read_commands(d, 0)
    assert [(v, n) for v, n, _ in commands] == [("pause", first), ("promote-full", second)]
    rest = read_commands(d, commands[0][2])
    assert [n for _, n, _ in rest] == [second]
    assert complete_length(d) < d.commands_file.stat().st_size  # the torn line is not consumed
    with pytest.raises(ValueError, match="unknown command"):
        append_command(d, "rollback")


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    atomic_write_text(target, "a: 1\n")
    atomic_write_text(target, "b: 2\n")
    assert target.read_text() == "b: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["routes.yaml"]


def test_history_skips_a_torn_last_line(tmp_path: Path) -> None:
    d = StateDir(tmp_path)
    d.append_history(HistoryPoint(t=1.0, phase="Healthy", weights={"v1": 100}))
    with d.history_file.open("a") as fh:
        fh.write('{"t": 2.0, "pha')
    assert [p.t for p in d.read_history()] == [1.0]


def test_histogram_quantile_interpolates_like_promql() -> None:
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.4, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.38)
    assert histogram_quantile(0.99, []) is None


ROUTER_T0 = """
# TYPE kanaria_router_requests_total counter
kanaria_router_requests_total{model="m",version="v2",code="200"} 10
kanaria_router_requests_total{model="m",version="v1",code="200"} 50
# TYPE kanaria_router_request_duration_seconds histogram
kanaria_router_request_duration_seconds_bucket{model="m",version="v2",le="0.1"} 10
kanaria_router_request_duration_seconds_bucket{model="m",version="v2",le="1.0"} 10
kanaria_router_request_duration_seconds_bucket{model="m",version="v2",le="+Inf"} 10
kanaria_router_request_duration_seconds_count{model="m",version="v2"} 10
kanaria_router_request_duration_seconds_sum{model="m",version="v2"} 0.5
"""
ROUTER_T1 = """
# TYPE kanaria_router_requests_total counter
kanaria_router_requests_total{model="m",version="v2",code="200"} 28
kanaria_router_requests_total{model="m",version="v2",code="500"} 2
kanaria_router_requests_total{model="m",version="v1",code="200"} 90
# TYPE kanaria_router_request_duration_seconds histogram
kanaria_router_request_duration_seconds_bucket{model="m",version="v2",le="0.1"} 10
kanaria_router_request_duration_seconds_bucket{model="m",version="v2",le="1.0"} 30
kanaria_router_request_duration_seconds_bucket{model="m",version="v2",le="+Inf"} 30
kanaria_router_request_duration_seconds_count{model="m",version="v2"} 30
kanaria_router_request_duration_seconds_sum{model="m",version="v2"} 9.5
"""


def _source() -> EmbeddedSource:
    scraper = Scraper(interval_s=1.0, clock=lambda: 110.0)
    scraper.set_targets({"router": "http://127.0.0.1:1/metrics"})
    scraper.record("router", parse(ROUTER_T0), 100.0)
    scraper.record("router", parse(ROUTER_T1), 110.0)
    return EmbeddedSource(scraper)


def _request(gate: MetricGate, min_requests: int = 0) -> MeasurementRequest:
    return MeasurementRequest(
        purpose="analysis", version="v2", gate=gate, interval="10s", minRequests=min_requests
    )


def test_embedded_source_computes_builtins_over_the_window() -> None:
    source = _source()
    ok = measure(
        source,
        _request(MetricGate(name="ok", builtin=Builtin.successRate, min=0.95), 5),
        "m",
        None,
        NOW,
    )
    assert ok.value == pytest.approx(0.9)  # 18 of 20 requests in the window, 2 were 500s
    assert ok.verdict is Verdict.Failed
    p99 = measure(
        source,
        _request(MetricGate(name="lat", builtin=Builtin.latencyP99, max=0.5)),
        "m",
        None,
        NOW,
    )
    assert p99.value == pytest.approx(0.1 + 0.9 * 0.99)  # all 20 new ones in (0.1, 1.0]
    assert p99.verdict is Verdict.Failed
    few = measure(
        source,
        _request(MetricGate(name="ok", builtin=Builtin.successRate, min=0.5), 50),
        "m",
        None,
        NOW,
    )
    assert few.verdict is Verdict.Inconclusive


def test_embedded_source_says_why_it_cannot_answer() -> None:
    source = _source()
    custom = measure(source, _request(MetricGate(name="c", query="up", max=1)), "m", None, NOW)
    assert custom.verdict is Verdict.Error
    assert "need Prometheus" in custom.reason
    shadow = measure(
        source,
        _request(MetricGate(name="a", builtin=Builtin.shadowAgreement, min=0.9)),
        "m",
        None,
        NOW,
    )
    assert shadow.verdict is Verdict.Inconclusive


SHADOW_SERVER_T0 = """
# TYPE kanaria_server_requests_total counter
kanaria_server_requests_total{model="m",version="v2",endpoint="infer",code="200"} 0
kanaria_server_requests_total{model="m",version="v2",endpoint="feedback",code="200"} 0
# TYPE kanaria_server_request_duration_seconds histogram
kanaria_server_request_duration_seconds_bucket{model="m",version="v2",le="0.01"} 0
kanaria_server_request_duration_seconds_bucket{model="m",version="v2",le="+Inf"} 0
kanaria_server_request_duration_seconds_count{model="m",version="v2"} 0
kanaria_server_request_duration_seconds_sum{model="m",version="v2"} 0
"""
SHADOW_SERVER_T1 = """
# TYPE kanaria_server_requests_total counter
kanaria_server_requests_total{model="m",version="v2",endpoint="infer",code="200"} 36
kanaria_server_requests_total{model="m",version="v2",endpoint="infer",code="500"} 4
kanaria_server_requests_total{model="m",version="v2",endpoint="feedback",code="500"} 30
# TYPE kanaria_server_request_duration_seconds histogram
kanaria_server_request_duration_seconds_bucket{model="m",version="v2",le="0.01"} 40
kanaria_server_request_duration_seconds_bucket{model="m",version="v2",le="+Inf"} 40
kanaria_server_request_duration_seconds_count{model="m",version="v2"} 40
kanaria_server_request_duration_seconds_sum{model="m",version="v2"} 0.2
"""


def test_embedded_source_reads_a_mirrored_version_from_its_model_server() -> None:
    """Regression: a shadow's traffic gates were read from the router, where mirrored
    copies are never counted, so they stayed Inconclusive and paused the shadow."""
    scraper = Scraper(interval_s=1.0, clock=lambda: 110.0)
    scraper.set_targets({"router": "http://127.0.0.1:1/metrics", "v2": "http://127.0.0.1:2/m"})
    for t, text in ((100.0, SHADOW_SERVER_T0), (110.0, SHADOW_SERVER_T1)):
        scraper.record("router", parse(""), t)
        scraper.record("v2", parse(text), t)
    source = EmbeddedSource(scraper)

    def server(gate: MetricGate) -> MeasurementRequest:
        return MeasurementRequest(
            purpose="analysis",
            version="v2",
            gate=gate,
            interval="10s",
            minRequests=20,
            traffic="server",
        )

    ok = measure(
        source, server(MetricGate(name="ok", builtin=Builtin.successRate, min=0.95)), "m", None, NOW
    )
    assert ok.value == pytest.approx(0.9)  # 36 of 40 infer copies; feedback calls not counted
    assert ok.verdict is Verdict.Failed
    p99 = measure(
        source, server(MetricGate(name="lat", builtin=Builtin.latencyP99, max=0.5)), "m", None, NOW
    )
    assert p99.verdict is Verdict.Successful
    assert p99.value is not None
    assert p99.value <= 0.01
    at_router = measure(
        source,
        _request(MetricGate(name="ok", builtin=Builtin.successRate, min=0.95)),
        "m",
        None,
        NOW,
    )
    assert at_router.verdict is Verdict.Inconclusive  # the router never saw the copies


def _spec() -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v2", "uri": "/m/v2.onnx"},
            "router": {"stickyKey": {"header": "x-user-id"}},
            "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}},
            "analysis": {
                "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.99}]
            },
        }
    )


def _status() -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(
        {
            "phase": "Progressing",
            "stable": {"version": "v1", "uri": "/m/v1.onnx"},
            "candidate": {"version": "v2", "uri": "/m/v2.onnx"},
            "strategy": "canary",
            "stage": "Steps",
            "currentStep": 1,
            "weights": {"v1": 75, "v2": 25},
            "versions": [
                {"version": "v1", "uri": "/m/v1.onnx", "role": "stable", "replicas": 1},
                {"version": "v2", "uri": "/m/v2.onnx", "role": "candidate", "replicas": 1},
            ],
            "measurements": [
                {
                    "metric": "success-rate",
                    "version": "v2",
                    "value": 0.97,
                    "verdict": "Failed",
                    "reason": "value 0.97 < min 0.99",
                    "time": NOW.isoformat(),
                }
            ],
        }
    )


def test_routes_follow_the_status() -> None:
    urls = {"v1": "http://127.0.0.1:9001", "v2": "http://127.0.0.1:9002"}
    both = build_routes("m", _spec(), _status(), urls, {"v1": True})
    assert both is not None
    routes = both.models["m"]
    assert routes.versions["v2"].weight == 25
    assert str(routes.versions["v2"].url) == "http://127.0.0.1:9002/"
    assert routes.stickyKey is not None
    assert routes.stickyKey.header == "x-user-id"


def test_routes_are_kept_when_a_weighted_version_has_no_process() -> None:
    # 25% would go nowhere: no document, so the router keeps its previous routes.
    v1 = {"v1": "http://127.0.0.1:9001"}
    assert build_routes("m", _spec(), _status(), v1, {"v1": True}) is None
    assert build_routes("m", _spec(), _status(), {}, {}) is None


def test_view_shows_weights_step_and_why() -> None:
    text = view.render("m", _spec(), _status(), now=NOW)
    assert "Progressing" in text
    assert "canary: 1/2 steps done" in text
    assert "v2  candidate" in text
    assert " 25%" in text
    assert "Failed" in text
    assert "value 0.97 < min 0.99" in text


def test_view_names_the_gates_of_the_current_stage() -> None:
    metrics = [
        {"name": "agreement", "builtin": "shadowAgreement", "min": 0.98},
        {"name": "success-rate", "builtin": "successRate", "min": 0.99},
    ]
    doc = _spec().model_dump(mode="json", exclude_none=True)
    doc["analysis"]["metrics"] = metrics
    spec = ModelDeploymentSpec.model_validate(doc)
    text = view.render("m", spec, _status(), now=NOW)
    assert "gates in Steps: success-rate  (not in this stage: agreement)" in text
    settled = _status().model_copy(update={"phase": "Healthy", "candidate": None})
    assert "gates in" not in view.render("m", spec, settled, now=NOW)


def test_report_draws_a_png(tmp_path: Path) -> None:
    history = [
        HistoryPoint(t=0.0, phase="Healthy", stable="v1", weights={"v1": 100}),
        HistoryPoint(
            t=2.0,
            phase="Progressing",
            step=0,
            stable="v1",
            candidate="v2",
            weights={"v1": 75, "v2": 25},
            events=["RolloutStarted: v2"],
        ),
        HistoryPoint(
            t=4.0,
            phase="RolledBack",
            step=0,
            stable="v1",
            candidate="v2",
            weights={"v1": 100},
            measurements=[
                {"metric": "success-rate", "version": "v2", "value": 0.5, "verdict": "Failed"}
            ],
            events=["RolledBack: gate failed"],
        ),
    ]
    spec = {"spec": {"analysis": {"metrics": [{"name": "success-rate", "min": 0.99}]}}}
    out = report.render(history, tmp_path / "r.png", "m", spec)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(report.ReportError, match="only 1 history point"):
        report.render(history[:1], tmp_path / "x.png", "m", spec)


def test_report_draws_a_compare_gates_interval_and_limit(tmp_path: Path) -> None:
    """A compare gate's panel shows the estimate, its band and the limit (not a value
    against min/max), from the evidence kanaria up keeps in its history."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def look(t: float, lower: float, upper: float, verdict: str) -> HistoryPoint:
        comparison = {"estimate": (lower + upper) / 2, "lower": lower, "upper": upper}
        return HistoryPoint(
            t=t,
            phase="Progressing",
            stable="v1",
            candidate="v2",
            weights={"v1": 50, "v2": 50},
            measurements=[
                {
                    "metric": "errors-vs-stable",
                    "version": "v2",
                    "value": (lower + upper) / 2,
                    "verdict": verdict,
                    "comparison": {**comparison, "limit": 0.01, "test": "difference"},
                }
            ],
        )

    history = [
        HistoryPoint(t=0.0, phase="Healthy", stable="v1", weights={"v1": 100}),
        look(5.0, -0.2, 0.25, "Inconclusive"),
        look(7.5, -0.05, 0.09, "Inconclusive"),
        look(10.0, -0.01, 0.06, "Inconclusive"),
        look(15.0, 0.012, 0.05, "Failed"),
    ]
    points = report.comparisons(history, 0.0)[("errors-vs-stable", "v2")]
    assert [(p.x, p.lower, p.upper, p.limit, p.verdict) for p in points][-1] == (
        15.0,
        0.012,
        0.05,
        0.01,
        "Failed",
    )
    fig, ax = plt.subplots()
    try:
        report.draw_comparison(ax, points, "tab:blue", "v2")
        report.fit_comparisons(ax, [points])
        labels = ax.get_legend_handles_labels()[1]
        assert {"v2 interval", "limit 0.01", "Failed"} <= set(labels)
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [np.asarray(line.get_ydata(), dtype=float)[0] for line in dashed] == [0.01]
        low, high = ax.get_ylim()
        assert low < 0.01 < high < 0.25  # the recent band, not the first one
    finally:
        plt.close(fig)
    # output shares are two-sided: a share falling by more than the limit fails too
    shares = [replace(p, two_sided=True) for p in points]
    fig, ax = plt.subplots()
    try:
        report.draw_comparison(ax, shares, "tab:blue", "v2")
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [np.asarray(line.get_ydata(), dtype=float)[0] for line in dashed] == [-0.01, 0.01]
    finally:
        plt.close(fig)
    spec = {
        "spec": {
            "analysis": {
                "metrics": [
                    {
                        "name": "errors-vs-stable",
                        "builtin": "errorRate",
                        "compare": {"margin": 0.01},
                    }
                ]
            }
        }
    }
    out = report.render(history, tmp_path / "r.png", "m", spec)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
