"""Turn a measurement request from the engine into a Measurement with a verdict.

This is where the engine's requests meet a metric source; whatever the source
does (no data, several series, timeouts, a bug), the result is a Measurement
whose verdict and reason say what happened, never an exception.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from kanaria.analysis.errors import MetricError, NoDataError
from kanaria.analysis.source import ExplainsNoData, MetricQuery, MetricSource
from kanaria.analysis.templates import count_query, gate_query, mirror_query
from kanaria.analysis.verdict import enough_requests, judge
from kanaria.api import Builtin, Measurement, Verdict
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


def mirror_counts(
    source: MetricSource, query: MetricQuery, now: datetime
) -> dict[str, float] | None:
    """Copies mirrored to ``query.version`` over its window by outcome (sent, dropped);
    None when the source cannot tell."""
    counts: dict[str, float] = {}
    for outcome in ("sent", "dropped"):
        mirror_q = replace(
            query,
            promql=mirror_query(
                query.model, query.version, query.namespace, window(query), outcome
            ),
            kind="mirror",
            builtin=None,
            outcome=outcome,
        )
        try:
            counts[outcome] = source.measure(mirror_q, now)
        except NoDataError:
            counts[outcome] = 0.0
        except Exception:  # any other failure: the source cannot say (never raise here)
            return None
    return counts


def starvation(dropped: float, sent: float, version: str, span: str) -> str | None:
    """The words for a shadow that gets no copies: ``dropped`` copies in ``span`` and
    ``sent`` (answered) none. None when copies did reach it, or none were made."""
    if dropped <= 0 or sent > 0:
        return None
    return (
        f"shadow {version} is starved of copies: the router dropped {dropped:.0f} mirrored "
        f"copies in {span} and the shadow answered none (the router's mirror worker gets no "
        "CPU, or its queue is full of copies the shadow does not answer; see "
        "KANARIA_MIRROR_PRIORITY)"
    )


def window(query: MetricQuery) -> str:
    """The query's window as a PromQL duration."""
    return f"{query.window_seconds:g}s"


def explain_missing_data(
    source: MetricSource, count_q: MetricQuery, count: float, now: datetime
) -> list[str]:
    """Why a gate has too few observations, beyond "no requests": the source's own
    problems (nothing scraped, targets down) and, for a version fed with mirrored copies,
    copies the router dropped. Never raises; empty when nothing explains it."""
    notes: list[str] = []
    if count <= 0 and isinstance(source, ExplainsNoData):
        try:
            problem = source.why_no_data(count_q)
        except Exception:  # a diagnosis must not turn a verdict into a crash
            problem = None
        if problem:
            notes.append(problem)
    if count_q.traffic == "server" or count_q.builtin is Builtin.shadowAgreement:
        counts = mirror_counts(source, count_q, now)
        if counts is not None:
            dropped, sent = counts["dropped"], counts["sent"]
            starved = starvation(dropped, sent, count_q.version, window(count_q))
            if starved is not None:
                notes.append(starved)
            elif dropped > 0:
                notes.append(
                    f"the router dropped {dropped:.0f} of {dropped + sent:.0f} copies mirrored "
                    f"to {count_q.version} in {window(count_q)}"
                )
    return notes


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
            why = "; ".join([why, *explain_missing_data(source, count_q, count, now)])
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
