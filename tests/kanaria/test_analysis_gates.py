"""Gate logic without a backend: templates, verdicts, and how every source outcome
becomes a verdict with a reason."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from kanaria.analysis import (
    AmbiguousResultError,
    MetricQuery,
    NoDataError,
    QueryFailedError,
    SourceUnavailableError,
    UnsupportedQueryError,
    builtin_query,
    judge,
    matcher,
    measure,
    render_custom,
)
from kanaria.api import Builtin, MetricGate, Verdict
from kanaria.rollout import MeasurementRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def gate(**kw: object) -> MetricGate:
    return MetricGate.model_validate({"name": "g", **kw})


# ----------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("bounds", "value", "verdict"),
    [
        ({"min": 0.99}, 0.995, Verdict.Successful),
        ({"min": 0.99}, 0.99, Verdict.Successful),  # bounds are inclusive
        ({"min": 0.99}, 0.98, Verdict.Failed),
        ({"max": 0.25}, 0.25, Verdict.Successful),
        ({"max": 0.25}, 0.3, Verdict.Failed),
        ({"min": 0.1, "max": 0.2}, 0.15, Verdict.Successful),
        ({"min": 0.1, "max": 0.2}, 0.05, Verdict.Failed),
        ({"min": 0.1, "max": 0.2}, 0.25, Verdict.Failed),
        ({"max": 0.25}, math.inf, Verdict.Failed),
        ({"min": 0.5}, -math.inf, Verdict.Failed),
        ({"min": 0.5}, math.nan, Verdict.Inconclusive),
    ],
)
def test_judge(bounds: dict[str, float], value: float, verdict: Verdict) -> None:
    got, reason = judge(value, gate(builtin="successRate", **bounds))
    assert got is verdict
    assert reason


def test_judge_reasons_name_the_bound() -> None:
    assert judge(0.9, gate(builtin="successRate", min=0.99))[1] == "value 0.9 < min 0.99"
    assert judge(0.3, gate(builtin="latencyP99", max=0.25))[1] == "value 0.3 > max 0.25"
    assert judge(0.1, gate(builtin="inputDrift", max=0.2))[1] == "value 0.1 within [-inf, 0.2]"


# ----------------------------------------------------------------------------- templates


def test_namespace_matcher_only_when_given() -> None:
    assert matcher("fraud", "v2", None) == 'model="fraud",version="v2"'
    assert matcher("fraud", "v2", "ml") == 'model="fraud",version="v2",namespace="ml"'
    assert "namespace" not in builtin_query(Builtin.successRate, "fraud", "v2", None, "30s")
    assert 'namespace="ml"' in builtin_query(Builtin.successRate, "fraud", "v2", "ml", "30s")


def test_builtin_templates_use_the_metric_names() -> None:
    q = builtin_query(Builtin.successRate, "m", "v", None, "1m")
    assert q == (
        '(sum(increase(kanaria_router_requests_total{model="m",version="v",code!~"5.."}[1m]))'
        ' or vector(0)) / sum(increase(kanaria_router_requests_total{model="m",version="v"}[1m]))'
    )
    q = builtin_query(Builtin.latencyP99, "m", "v", None, "1m", 0.95)
    assert q.startswith("histogram_quantile(0.95, sum by (le) (rate(")
    assert "kanaria_router_request_duration_seconds_bucket" in q
    assert builtin_query(Builtin.latencyP99, "m", "v", None, "1m").startswith(
        "histogram_quantile(0.99,"
    )
    assert "kanaria_input_drift_psi" in builtin_query(Builtin.inputDrift, "m", "v", None, "1m")
    assert 'result="agree"' in builtin_query(Builtin.shadowAgreement, "m", "v", None, "1m")
    assert 'result="correct"' in builtin_query(Builtin.accuracy, "m", "v", None, "1m")


def test_mirrored_traffic_is_measured_at_the_server() -> None:
    q = builtin_query(Builtin.successRate, "m", "v", None, "1m", traffic="server")
    assert q == (
        '(sum(increase(kanaria_server_requests_total{model="m",version="v",code!~"5..",'
        'endpoint="infer"}[1m])) or vector(0)) / sum(increase(kanaria_server_requests_total'
        '{model="m",version="v",endpoint="infer"}[1m]))'
    )
    q = builtin_query(Builtin.latencyP99, "m", "v", None, "1m", traffic="server")
    assert "kanaria_server_request_duration_seconds_bucket" in q
    # Gates that are not about request outcomes do not depend on where traffic is counted.
    for b in (Builtin.inputDrift, Builtin.shadowAgreement, Builtin.accuracy):
        assert builtin_query(b, "m", "v", None, "1m", traffic="server") == builtin_query(
            b, "m", "v", None, "1m"
        )


def test_custom_query_placeholders() -> None:
    q = render_custom(
        'sum(rate(x{model="{{model}}",version="{{version}}",namespace="{{namespace}}"}'
        "[{{interval}}]))",
        "fraud",
        "v2",
        None,
        "30s",
    )
    assert q == 'sum(rate(x{model="fraud",version="v2",namespace=""}[30s]))'


# ----------------------------------------------------------------------------- measure


class TableSource:
    """A MetricSource answering from a table keyed by query kind: the protocol's
    simplest real implementation, used to pin down how outcomes become verdicts."""

    def __init__(self, answers: dict[str, float | Exception]) -> None:
        self.answers = answers
        self.seen: list[MetricQuery] = []

    def measure(self, query: MetricQuery, at: datetime | None = None) -> float:
        self.seen.append(query)
        answer = self.answers[query.kind]
        if isinstance(answer, Exception):
            raise answer
        return answer


def request(min_requests: int = 0, **kw: object) -> MeasurementRequest:
    g = gate(**(kw or {"builtin": "successRate", "min": 0.99}))
    return MeasurementRequest(
        purpose="analysis", version="v2", gate=g, interval="30s", minRequests=min_requests
    )


@pytest.mark.parametrize(
    ("answer", "verdict", "reason"),
    [
        (0.995, Verdict.Successful, "within"),
        (0.9, Verdict.Failed, "< min 0.99"),
        (NoDataError("the query returned no series"), Verdict.Inconclusive, "no series"),
        (AmbiguousResultError("3 series"), Verdict.Error, "3 series"),
        (QueryFailedError("parse error"), Verdict.Error, "parse error"),
        (SourceUnavailableError("cannot reach"), Verdict.Error, "cannot reach"),
        (UnsupportedQueryError("needs Prometheus"), Verdict.Error, "needs Prometheus"),
        (RuntimeError("boom"), Verdict.Error, "metric source failed: RuntimeError: boom"),
        (math.nan, Verdict.Inconclusive, "NaN"),
    ],
)
def test_measure_maps_every_outcome_to_a_verdict(
    answer: float | Exception, verdict: Verdict, reason: str
) -> None:
    m = measure(TableSource({"count": 100.0, "value": answer}), request(), "fraud", None, NOW)
    assert m.verdict is verdict
    assert reason in m.reason
    assert m.metric == "g"
    assert m.version == "v2"
    assert m.time == NOW
    assert m.query.startswith("(sum(increase(kanaria_router_requests_total")
    assert (m.value is not None) == (verdict in (Verdict.Successful, Verdict.Failed))


def test_min_requests_makes_too_little_traffic_inconclusive() -> None:
    src = TableSource({"count": 12.0, "value": 0.5})
    m = measure(src, request(min_requests=50), "fraud", None, NOW)
    assert m.verdict is Verdict.Inconclusive
    assert m.reason == "only 12 requests in 30s (< minRequests 50)"
    assert [q.kind for q in src.seen] == ["count"]  # never judged on too little data
    src = TableSource({"count": NoDataError("none"), "value": 0.5})
    m = measure(src, request(min_requests=1), "fraud", None, NOW)
    assert m.reason == "no requests in 30s: nothing to judge"
    src = TableSource({"count": 80.0, "value": 0.5})
    assert measure(src, request(min_requests=50), "fraud", None, NOW).verdict is Verdict.Failed


@pytest.mark.parametrize("count", [0.0, NoDataError("no series")])
def test_no_traffic_is_never_judged_even_without_min_requests(count: float | Exception) -> None:
    """A drift gauge keeps a value with no traffic; judging it would promote a version
    nobody used."""
    src = TableSource({"count": count, "value": 0.01})
    m = measure(src, request(0, builtin="inputDrift", max=0.2), "fraud", None, NOW)
    assert m.verdict is Verdict.Inconclusive
    assert m.reason == "no requests in 30s: nothing to judge"


def test_count_source_errors_are_errors() -> None:
    src = TableSource({"count": SourceUnavailableError("down"), "value": 0.5})
    assert measure(src, request(), "fraud", None, NOW).verdict is Verdict.Error


def test_count_queries_follow_the_gate() -> None:
    for builtin, metric in [
        ("shadowAgreement", "kanaria_shadow_comparisons_total"),
        ("accuracy", "kanaria_feedback_total"),
        ("inputDrift", "kanaria_server_requests_total"),
        ("latencyP99", "kanaria_router_requests_total"),
    ]:
        src = TableSource({"count": 100.0, "value": 0.0})
        bounds = {"max": 1.0} if builtin in ("inputDrift", "latencyP99") else {"min": 0.0}
        measure(src, request(1, builtin=builtin, **bounds), "m", "ns", NOW)
        assert metric in src.seen[0].promql
        assert 'namespace="ns"' in src.seen[0].promql
