"""Turn a measurement request from the engine into a Measurement with a verdict.

This is where the engine's requests meet a metric source; whatever the source
does (no data, several series, timeouts, a bug), the result is a Measurement
whose verdict and reason say what happened, never an exception.
"""

from __future__ import annotations

from datetime import datetime

from kanaria.analysis.errors import MetricError, NoDataError
from kanaria.analysis.source import MetricQuery, MetricSource
from kanaria.analysis.templates import count_query, gate_query
from kanaria.analysis.verdict import enough_requests, judge
from kanaria.api import Measurement, Verdict
from kanaria.durations import parse_duration
from kanaria.rollout.types import MeasurementRequest


def queries(
    request: MeasurementRequest, model: str, namespace: str | None
) -> tuple[MetricQuery, MetricQuery]:
    """The value query and the request-count query (every verdict needs traffic)."""
    gate = request.gate
    window = request.interval
    seconds = parse_duration(window)
    value = MetricQuery(
        promql=gate_query(gate, model, request.version, namespace, window, request.traffic),
        kind="value",
        builtin=gate.builtin,
        model=model,
        version=request.version,
        namespace=namespace,
        window_seconds=seconds,
        quantile=gate.quantile,
        traffic=request.traffic,
    )
    count = MetricQuery(
        promql=count_query(
            gate.builtin, model, request.version, namespace, window, request.traffic
        ),
        kind="count",
        builtin=gate.builtin,
        model=model,
        version=request.version,
        namespace=namespace,
        window_seconds=seconds,
        traffic=request.traffic,
    )
    return value, count


def measure(
    source: MetricSource,
    request: MeasurementRequest,
    model: str,
    namespace: str | None,
    now: datetime,
) -> Measurement:
    """Measure one request and judge it; ``now`` stamps the measurement and is the
    evaluation time passed to the source."""
    value_q, count_q = queries(request, model, namespace)
    base = {"metric": request.gate.name, "version": request.version, "query": value_q.promql}
    try:
        try:
            count = source.measure(count_q, now)
        except NoDataError:
            count = 0.0
        ok, why = enough_requests(count, request.minRequests, request.interval)
        if not ok:
            return Measurement(**base, verdict=Verdict.Inconclusive, reason=why, time=now)
        value = source.measure(value_q, now)
    except MetricError as exc:
        return Measurement(**base, verdict=exc.verdict, reason=exc.reason, time=now)
    except Exception as exc:  # a source bug must not stop the control loop
        reason = f"metric source failed: {type(exc).__name__}: {exc}"
        return Measurement(**base, verdict=Verdict.Error, reason=reason, time=now)
    verdict, reason = judge(value, request.gate)
    shown = value if verdict is not Verdict.Inconclusive else None
    return Measurement(**base, value=shown, verdict=verdict, reason=reason, time=now)
