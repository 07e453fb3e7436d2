"""Turn a measurement request from the engine into a Measurement with a verdict.

This is where the engine's requests meet a metric source; whatever the source
does (no data, several series, timeouts, a bug), the result is a Measurement
whose verdict and reason say what happened, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import Literal

from kanaria.analysis.compare import (
    Judgement,
    Side,
    judge_failing_share,
    judge_quantile,
    judge_rank,
    judge_shares,
)
from kanaria.analysis.errors import MetricError, NoDataError, UnsupportedQueryError
from kanaria.analysis.source import ExplainsNoData, MetricQuery, MetricSource, VectorSource
from kanaria.analysis.templates import (
    DEFAULT_QUANTILE,
    compare_queries,
    count_query,
    gate_query,
    mirror_query,
)
from kanaria.analysis.verdict import enough_requests, judge
from kanaria.api import Builtin, Measurement, Verdict
from kanaria.durations import parse_duration
from kanaria.rollout.gates import ComparisonRequest
from kanaria.rollout.types import MeasurementRequest


def queries(
    request: MeasurementRequest, model: str, namespace: str | None
) -> tuple[MetricQuery, MetricQuery]:
    """The value query and the request-count query (every verdict needs traffic)."""
    gate = request.gate
    window = request.interval
    seconds = parse_duration(window)
    value = MetricQuery(
        promql=gate_query(
            gate, model, request.version, namespace, window, request.traffic, request.band
        ),
        kind="value",
        builtin=gate.builtin,
        model=model,
        version=request.version,
        namespace=namespace,
        window_seconds=seconds,
        quantile=gate.quantile,
        traffic=request.traffic,
        band=request.band,
    )
    count = MetricQuery(
        promql=count_query(
            gate.builtin, model, request.version, namespace, window, request.traffic, request.band
        ),
        kind="count",
        builtin=gate.builtin,
        model=model,
        version=request.version,
        namespace=namespace,
        window_seconds=seconds,
        traffic=request.traffic,
        band=request.band,
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
    if isinstance(request, ComparisonRequest):
        return measure_comparison(source, request, model, namespace, now)
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


# --------------------------------------------------------------------------- compare gates


def comparison_window(request: ComparisonRequest, now: datetime) -> float:
    """Seconds since the compare gate's window began (at least one)."""
    return max(1.0, math.ceil((now - request.since).total_seconds()))


def comparison_queries(
    request: ComparisonRequest, model: str, namespace: str | None, now: datetime
) -> dict[str, dict[str, MetricQuery]]:
    """For the candidate and the stable (``request.version``, ``request.against``), the
    count queries of a compare gate since its window began, by what they count."""
    gate = request.gate
    assert gate.builtin is not None  # compare gates are builtins (MetricGate's rules)
    seconds = comparison_window(request, now)
    window = f"{seconds:g}s"
    kinds: dict[str, Literal["count", "failed", "buckets", "classes"]] = {
        "total": "count",
        "failed": "failed",
        "buckets": "buckets",
        "classes": "classes",
    }
    out: dict[str, dict[str, MetricQuery]] = {}
    for version in (request.version, request.against):
        promql = compare_queries(gate.builtin, model, version, namespace, window, request.traffic)
        out[version] = {
            what: MetricQuery(
                promql=text,
                kind=kinds[what],
                builtin=gate.builtin,
                model=model,
                version=version,
                namespace=namespace,
                window_seconds=seconds,
                quantile=gate.quantile,
                traffic=request.traffic,
            )
            for what, text in promql.items()
        }
    return out


def _number(source: MetricSource, query: MetricQuery, now: datetime) -> float:
    try:
        return source.measure(query, now)
    except NoDataError:
        return 0.0


def _vector(source: MetricSource, query: MetricQuery, now: datetime) -> dict[str, float]:
    if not isinstance(source, VectorSource):
        raise UnsupportedQueryError(
            f"this metric source cannot read {query.kind} vectors, which compare gates on "
            f"{query.builtin} need"
        )
    try:
        return source.measure_vector(query, now)
    except NoDataError:
        return {}


def _buckets(raw: dict[str, float]) -> dict[float, float]:
    return {float(le): v for le, v in raw.items()}


def judge_comparison(
    request: ComparisonRequest,
    counts: dict[str, dict[str, float]],
    vectors: dict[str, dict[str, dict[str, float]]],
) -> Judgement:
    """The pure part of a compare gate: its verdict from both versions' counts
    (``counts[version][total|failed]``, ``vectors[version][buckets|classes]``)."""
    gate = request.gate
    compare = gate.compare
    assert compare is not None
    cand, stable = request.version, request.against
    windows, since = request.windows, request.since
    if gate.builtin in (Builtin.latencyP99, Builtin.latencyDistribution):
        c = (cand, _buckets(vectors[cand]["buckets"]))
        s = (stable, _buckets(vectors[stable]["buckets"]))
        if gate.builtin is Builtin.latencyP99:
            q = gate.quantile or DEFAULT_QUANTILE
            return judge_quantile(q, c, s, compare, windows, since)
        return judge_rank(c, s, compare, windows, since)
    if gate.builtin is Builtin.outputDistribution:
        return judge_shares(
            (cand, vectors[cand]["classes"]),
            (stable, vectors[stable]["classes"]),
            compare,
            windows,
            since,
        )
    what = "incorrect share" if gate.builtin is Builtin.accuracy else "5xx share"
    return judge_failing_share(
        Side(cand, counts[cand]["total"], counts[cand]["failed"]),
        Side(stable, counts[stable]["total"], counts[stable]["failed"]),
        compare,
        windows,
        since,
        what,
    )


def measure_comparison(
    source: MetricSource,
    request: ComparisonRequest,
    model: str,
    namespace: str | None,
    now: datetime,
) -> Measurement:
    """Measure both versions' counts since the window began and judge the candidate
    against the stable (never raises: a source problem is an Error verdict)."""
    qs = comparison_queries(request, model, namespace, now)
    first = next(iter(qs[request.version].values()))
    base = {"metric": request.gate.name, "version": request.version, "query": first.promql}
    try:
        counts: dict[str, dict[str, float]] = {}
        vectors: dict[str, dict[str, dict[str, float]]] = {}
        for version, by_what in qs.items():
            counts[version] = {}
            vectors[version] = {}
            for what, q in by_what.items():
                if q.kind in ("buckets", "classes"):
                    vectors[version][what] = _vector(source, q, now)
                else:
                    counts[version][what] = _number(source, q, now)
        judged = judge_comparison(request, counts, vectors)
    except MetricError as exc:
        return Measurement(**base, verdict=exc.verdict, reason=exc.reason, time=now)
    except Exception as exc:  # a source bug must not stop the control loop
        reason = f"metric source failed: {type(exc).__name__}: {exc}"
        return Measurement(**base, verdict=Verdict.Error, reason=reason, time=now)
    reason = judged.reason
    if judged.comparison.candidate.requests <= 0:
        total = qs[request.version].get("total") or first
        notes = explain_missing_data(source, replace(total, kind="count"), 0.0, now)
        reason = "; ".join([reason, *notes])
    return Measurement(
        **base,
        value=judged.value,
        verdict=judged.verdict,
        reason=reason,
        time=now,
        comparison=judged.comparison,
    )
