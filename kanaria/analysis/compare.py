"""Judging the candidate against the stable version from both versions' counts (pure).

The counts (requests and failures, latency buckets, output classes) are cumulative
since the current step or stage began; each function here turns them into a
verdict, a reason a person can read, and the evidence kept in status
(:class:`kanaria.api.Comparison`). The statistics are in
:mod:`kanaria.analysis.sequential`; this module decides what is compared with what:

* **failing shares** (successRate, errorRate, accuracy): the candidate's share
  of failures minus the stable's (or, relative, their ratio) is held against the
  margin. Each end of the interval comes from inverting a test whose variance is
  taken *under the value tested* (both versions' failures pooled), which keeps
  false alarms at the level even when the candidate has seen only a few requests;
* **latency quantile** (latencyP99): the ratio of the two versions' quantiles,
  with a band from exact bands on each histogram's CDF;
* **latency distribution** (latencyDistribution): the Mann-Whitney effect on the
  bucket counts, P(candidate slower) - 1/2, which moves when most requests get
  slower even if the tail does not;
* **output classes** (outputDistribution): each class's share, candidate minus
  stable; the class furthest apart decides.

Failed when the interval lies above the limit, Successful when it lies at or below
it, Inconclusive otherwise (including no data at all).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from statistics import NormalDist

from kanaria.analysis.sequential import (
    ConfidenceSequence,
    min_sample_size,
    mixture_radius,
    mixture_rho,
    normal_sequence,
    planned_info,
    quantile_band,
    rank_effect,
)
from kanaria.api import Compare, Comparison, Verdict, VersionEvidence

RATIO_RANGE = (1e-6, 1e6)
"""Ratios searched for a relative interval's ends (beyond: shown as the range's end)."""

DEFAULT_PLANNING_RATE = 0.01
"""Failing share assumed for the sample size before the stable has shown its own."""


@dataclass(frozen=True)
class Judgement:
    """A compare gate's verdict, its reason, the value shown, and the evidence."""

    verdict: Verdict
    reason: str
    value: float | None
    comparison: Comparison


@dataclass(frozen=True)
class Side:
    """One version's counts of a failing share."""

    version: str
    requests: float
    events: float


def window_alpha(compare: Compare, windows: int) -> float:
    """The error budget of one window: ``(1 - confidence) / windows``."""
    return (1.0 - compare.confidence) / max(windows, 1)


def _verdict(lower: float, upper: float, limit: float) -> Verdict:
    if lower > limit:
        return Verdict.Failed
    if upper <= limit:
        return Verdict.Successful
    return Verdict.Inconclusive


def _bisect(f: Callable[[float], bool], inside: float, outside: float, steps: int = 40) -> float:
    """The boundary between ``inside`` (f true) and ``outside`` (f false)."""
    for _ in range(steps):
        mid = (inside + outside) / 2.0
        if f(mid):
            inside = mid
        else:
            outside = mid
    return inside


def _null_stderr(c: Side, s: Side, k: float, shift: float) -> float:
    """Standard error of ``p_c - k·p_s`` under the hypothesis ``p_c = k·p_s + shift``,
    with the common rate estimated from both versions' pooled counts (one pseudo
    failure and one pseudo success added, so it is never zero)."""
    base = (c.events + s.events - c.requests * shift + 1.0) / (k * c.requests + s.requests + 2.0)
    ps = min(max(base, 0.0), 1.0)
    pc = min(max(k * ps + shift, 0.0), 1.0)
    var = max(pc * (1 - pc), 1e-12) / c.requests + k * k * max(ps * (1 - ps), 1e-12) / s.requests
    return math.sqrt(var)


def _rates(c: Side, s: Side) -> tuple[float, float]:
    return c.events / c.requests, s.events / s.requests


def difference_interval(
    c: Side, s: Side, rho: float, alpha: float
) -> tuple[float, float, float, Callable[[float], tuple[float, float]]]:
    """``p_c - p_s``, its confidence-sequence interval, and ``z(limit)``: the test at a
    limit as (statistic, boundary) in standard errors under that limit."""
    pc, ps = _rates(c, s)
    est = pc - ps

    def z(limit: float) -> tuple[float, float]:
        se = _null_stderr(c, s, 1.0, limit)
        return (est - limit) / se, mixture_radius(se, rho, alpha) / se

    def covers(limit: float) -> bool:
        stat, bound = z(limit)
        return abs(stat) < bound

    lower = _bisect(covers, est, -1.0) if covers(est) else est
    upper = _bisect(covers, est, 1.0) if covers(est) else est
    return est, lower, upper, z


def ratio_interval(
    c: Side, s: Side, rho: float, alpha: float
) -> tuple[float, float, float, Callable[[float], tuple[float, float]]]:
    """``p_c / p_s``, its interval (by inverting ``p_c - k·p_s = 0`` over ``k``), and the
    test at a ratio ``k`` as (statistic, boundary)."""
    pc, ps = _rates(c, s)
    est = pc / ps if ps > 0 else (math.inf if pc > 0 else 1.0)

    def z(k: float) -> tuple[float, float]:
        se = _null_stderr(c, s, k, 0.0)
        return (pc - k * ps) / se, mixture_radius(se, rho, alpha) / se

    def covers(log_k: float) -> bool:
        stat, bound = z(math.exp(log_k))
        return abs(stat) < bound

    # A point inside the interval to search out from: the estimate itself (statistic
    # 0), or, when it is 0 or infinite, the end of the range it heads for.
    lo_k, hi_k = math.log(RATIO_RANGE[0]), math.log(RATIO_RANGE[1])
    centre = math.log(est) if 0 < est < math.inf else (lo_k if est == 0 else hi_k)
    if not covers(centre):
        return est, est, est, z
    lower = math.exp(_bisect(covers, centre, lo_k))
    upper = math.exp(_bisect(covers, centre, hi_k))
    return est, lower, upper, z


def judge_failing_share(
    candidate: Side,
    stable: Side,
    compare: Compare,
    windows: int,
    since: datetime | None,
    what: str = "failing share",
) -> Judgement:
    """Candidate vs stable on a share of failures (5xx, or incorrect labels)."""
    alpha = window_alpha(compare, windows)
    relative = bool(compare.relative)
    limit = 1.0 + compare.margin if relative else compare.margin
    rate_s = (stable.events + 1.0) / (stable.requests + 2.0) if stable.requests > 0 else None
    planning = rate_s if rate_s is not None else DEFAULT_PLANNING_RATE
    gap = compare.margin * planning if relative else compare.margin
    rho = mixture_rho(planned_info(gap, alpha, compare.power), alpha)
    ratio = stable.requests / candidate.requests if candidate.requests > 0 else 1.0
    n_min = _planned_size(planning, ratio, compare.margin, relative, alpha, compare.power, rho)
    evidence = {
        "candidate": VersionEvidence(
            version=candidate.version,
            requests=candidate.requests,
            events=candidate.events,
            estimate=candidate.events / candidate.requests if candidate.requests > 0 else None,
        ),
        "stable": VersionEvidence(
            version=stable.version,
            requests=stable.requests,
            events=stable.events,
            estimate=stable.events / stable.requests if stable.requests > 0 else None,
        ),
        "limit": limit,
        "confidence": 1.0 - alpha,
        "minSampleSize": n_min,
        "since": since,
    }
    test = "ratio" if relative else "difference"
    if candidate.requests <= 0 or stable.requests <= 0:
        who = [v.version for v in (candidate, stable) if v.requests <= 0]
        reason = f"no requests to {' and '.join(who)} since the step began: nothing to compare"
        return Judgement(Verdict.Inconclusive, reason, None, Comparison(test=test, **evidence))
    interval = ratio_interval if relative else difference_interval
    est, lower, upper, z = interval(candidate, stable, rho, alpha)
    stat, bound = z(limit)
    verdict = _verdict(lower, upper, limit)
    comparison = Comparison(
        test=test,
        estimate=_finite(est),
        lower=_finite(lower),
        upper=_finite(upper),
        statistic=_finite(stat),
        boundary=_finite(bound),
        **evidence,
    )
    if relative:
        shown = f"{what} ratio {_num(est)} [{_num(lower)}, {_num(upper)}]"
        allowed = f"{limit:g}x the stable's"
    else:
        shown = f"{what} {_signed(est)} [{_signed(lower)}, {_signed(upper)}] vs stable"
        allowed = f"+{compare.margin:g}"
    reason = _reason(verdict, shown, allowed, candidate.requests, n_min, alpha)
    return Judgement(verdict, reason, _finite(est), comparison)


def judge_quantile(
    q: float,
    candidate: tuple[str, Mapping[float, float]],
    stable: tuple[str, Mapping[float, float]],
    compare: Compare,
    windows: int,
    since: datetime | None,
) -> Judgement:
    """Candidate vs stable on a latency quantile: their ratio, with a band made of
    exact bands on each version's CDF (half the window's budget each)."""
    alpha = window_alpha(compare, windows)
    limit = 1.0 + compare.margin
    band_c = quantile_band(q, candidate[1], alpha / 2)
    band_s = quantile_band(q, stable[1], alpha / 2)
    n_min = _quantile_sample_size(q, stable[1], compare.margin, alpha / 2)
    comparison_args = {
        "candidate": VersionEvidence(
            version=candidate[0], requests=band_c.requests, estimate=_finite(band_c.estimate)
        ),
        "stable": VersionEvidence(
            version=stable[0], requests=band_s.requests, estimate=_finite(band_s.estimate)
        ),
        "limit": limit,
        "confidence": 1.0 - alpha,
        "minSampleSize": n_min,
        "since": since,
    }
    if band_c.requests <= 0 or band_s.requests <= 0:
        reason = "no latency observations of both versions since the step began"
        return Judgement(
            Verdict.Inconclusive, reason, None, Comparison(test="quantileRatio", **comparison_args)
        )
    est = _safe_ratio(band_c.estimate, band_s.estimate)
    lower = _safe_ratio(band_c.lower, band_s.upper)
    upper = _safe_ratio(band_c.upper, band_s.lower)
    verdict = _verdict(lower, upper, limit)
    comparison = Comparison(
        test="quantileRatio",
        estimate=_finite(est),
        lower=_finite(lower),
        upper=_finite(upper),
        statistic=_finite(est),
        boundary=limit,
        **comparison_args,
    )
    shown = (
        f"p{q * 100:g} {_ms(band_c.estimate)} vs {_ms(band_s.estimate)}: ratio {_num(est)} "
        f"[{_num(lower)}, {_num(upper)}]"
    )
    reason = _reason(verdict, shown, f"{limit:g}x", band_c.requests, n_min, alpha)
    return Judgement(verdict, reason, _finite(est), comparison)


def judge_rank(
    candidate: tuple[str, Mapping[float, float]],
    stable: tuple[str, Mapping[float, float]],
    compare: Compare,
    windows: int,
    since: datetime | None,
) -> Judgement:
    """Candidate vs stable on the whole latency distribution: the Mann-Whitney effect
    ``P(candidate slower) - 1/2`` on the bucket counts (ties count half)."""
    alpha = window_alpha(compare, windows)
    limit = compare.margin
    effect, stderr, n_c, n_s = rank_effect(candidate[1], stable[1])
    gap = max(compare.margin, 1e-3)
    rho = mixture_rho(planned_info(gap, alpha, compare.power), alpha)
    ratio = n_s / n_c if n_c > 0 else 1.0
    n_min = _rank_sample_size(gap, max(ratio, 1e-6), alpha, compare.power, rho)
    args = {
        "candidate": VersionEvidence(version=candidate[0], requests=n_c),
        "stable": VersionEvidence(version=stable[0], requests=n_s),
        "limit": limit,
        "confidence": 1.0 - alpha,
        "minSampleSize": n_min,
        "since": since,
    }
    if n_c <= 0 or n_s <= 0:
        reason = "no latency observations of both versions since the step began"
        return Judgement(Verdict.Inconclusive, reason, None, Comparison(test="rank", **args))
    cs = normal_sequence(effect, stderr, rho, alpha)
    verdict = _verdict(cs.lower, cs.upper, limit)
    comparison = Comparison(
        test="rank",
        estimate=effect,
        lower=cs.lower,
        upper=cs.upper,
        statistic=(effect - limit) / stderr,
        boundary=cs.boundary,
        **args,
    )
    shown = (
        f"P(candidate slower) - 1/2 = {_signed(effect)} [{_signed(cs.lower)}, {_signed(cs.upper)}]"
    )
    reason = _reason(verdict, shown, f"+{limit:g}", n_c, n_min, alpha)
    return Judgement(verdict, reason, effect, comparison)


def judge_shares(
    candidate: tuple[str, Mapping[str, float]],
    stable: tuple[str, Mapping[str, float]],
    compare: Compare,
    windows: int,
    since: datetime | None,
) -> Judgement:
    """Candidate vs stable on output class shares: per class, the share difference
    with its interval (the window's budget split over the classes); Failed when some
    class moved by more than the margin, Successful when none can have."""
    alpha = window_alpha(compare, windows)
    limit = compare.margin
    classes = sorted(set(candidate[1]) | set(stable[1]))
    n_c = sum(candidate[1].values())
    n_s = sum(stable[1].values())
    each = alpha / max(len(classes), 2)
    gap = max(compare.margin, 1e-3)
    rho = mixture_rho(planned_info(gap, each, compare.power), each)
    ratio = n_s / n_c if n_c > 0 else 1.0
    worst_share = max((v / n_s for v in stable[1].values()), default=0.5) if n_s > 0 else 0.5
    n_min = min_sample_size(
        min(max(worst_share, 0.01), 0.5), max(ratio, 1e-6), gap, False, each, compare.power, rho
    )
    base = {"limit": limit, "confidence": 1.0 - alpha, "minSampleSize": n_min, "since": since}
    if n_c <= 0 or n_s <= 0:
        reason = "no classified outputs of both versions since the step began"
        return Judgement(
            Verdict.Inconclusive,
            reason,
            None,
            Comparison(
                test="shares",
                candidate=VersionEvidence(version=candidate[0], requests=n_c),
                stable=VersionEvidence(version=stable[0], requests=n_s),
                **base,
            ),
        )
    rows: list[tuple[str, float, float, float, float, float]] = []
    for cls in classes:
        c = Side(candidate[0], n_c, candidate[1].get(cls, 0.0))
        s = Side(stable[0], n_s, stable[1].get(cls, 0.0))
        est, lower, upper, z = difference_interval(c, s, rho, each)
        stat, bound = z(limit if est >= 0 else -limit)
        rows.append((cls, est, lower, upper, stat, bound))
    failed = [r for r in rows if r[2] > limit or r[3] < -limit]
    open_ = [r for r in rows if not (r[2] >= -limit and r[3] <= limit)]
    if failed:
        verdict, row = Verdict.Failed, max(failed, key=lambda r: abs(r[1]))
    elif open_:
        verdict, row = Verdict.Inconclusive, max(open_, key=lambda r: abs(r[1]))
    else:
        verdict, row = Verdict.Successful, max(rows, key=lambda r: abs(r[1]))
    cls, est, lower, upper, stat, bound = row
    comparison = Comparison(
        test="shares",
        candidate=VersionEvidence(
            version=candidate[0],
            requests=n_c,
            events=candidate[1].get(cls, 0.0),
            estimate=candidate[1].get(cls, 0.0) / n_c,
        ),
        stable=VersionEvidence(
            version=stable[0],
            requests=n_s,
            events=stable[1].get(cls, 0.0),
            estimate=stable[1].get(cls, 0.0) / n_s,
        ),
        estimate=est,
        lower=lower,
        upper=upper,
        statistic=_finite(stat),
        boundary=_finite(bound),
        note=f"class {cls}",
        **base,
    )
    shown = (
        f"class {cls} share {candidate[1].get(cls, 0.0) / n_c:.3g} vs "
        f"{stable[1].get(cls, 0.0) / n_s:.3g}: {_signed(est)} [{_signed(lower)}, {_signed(upper)}]"
    )
    reason = _reason(verdict, shown, f"±{limit:g}", n_c, n_min, alpha)
    return Judgement(verdict, reason, est, comparison)


# --------------------------------------------------------------------------- sample sizes


@lru_cache(maxsize=4096)
def _cached_size(
    rate: float, ratio: float, margin: float, relative: bool, alpha: float, power: float, rho: float
) -> int | None:
    return min_sample_size(rate, ratio, margin, relative, alpha, power, rho)


def _planned_size(
    rate: float, ratio: float, margin: float, relative: bool, alpha: float, power: float, rho: float
) -> int | None:
    """:func:`min_sample_size` with the rate and split rounded to two significant digits
    (a plan, not a measurement; the rounding lets every look reuse it)."""
    return _cached_size(
        float(f"{rate:.2g}"), float(f"{max(ratio, 1e-6):.2g}"), margin, relative, alpha, power, rho
    )


def _rank_sample_size(gap: float, ratio: float, alpha: float, power: float, rho: float) -> int:
    """Candidate requests for the rank effect of identical continuous latencies to be
    shown below ``gap``: the variance of the effect is at most (1/12)(1/n_c + 1/n_s)."""
    z = NormalDist().inv_cdf(power)
    n = 1
    while n < 10**9:
        stderr = math.sqrt((1.0 / 12.0) * (1.0 / n + 1.0 / (ratio * n)))
        if gap >= mixture_radius(stderr, rho, alpha) + z * stderr:
            return n
        n = math.ceil(n * 1.25) + 1
    return n


def _quantile_sample_size(
    q: float, stable: Mapping[float, float], margin: float, alpha: float
) -> int | None:
    """Requests per version at which the quantile ratio's band would fit inside
    ``1 + margin`` for a candidate shaped like the stable (the stable's histogram
    scaled up, its shape rounded to two significant digits so looks reuse the plan);
    None before the stable has latency data."""
    n_s = max(stable.values(), default=0.0)
    if n_s <= 0:
        return None
    shape = tuple(sorted((le, float(f"{v / n_s:.2g}")) for le, v in stable.items()))
    return _cached_quantile_size(q, shape, margin, alpha)


@lru_cache(maxsize=1024)
def _cached_quantile_size(
    q: float, shape: tuple[tuple[float, float], ...], margin: float, alpha: float
) -> int | None:
    n = 64
    while n < 10**8:
        scaled = {le: share * n for le, share in shape}
        band = quantile_band(q, scaled, alpha / 2)
        upper = _safe_ratio(band.upper, band.lower)
        if upper <= 1.0 + margin:
            return n
        n *= 2
    return None


# --------------------------------------------------------------------------- words


def _reason(
    verdict: Verdict, shown: str, allowed: str, n: float, n_min: int | None, alpha: float
) -> str:
    conf = f"{(1 - alpha) * 100:.4g}%"
    if verdict is Verdict.Failed:
        return f"{shown}: worse than {allowed} with {conf} confidence"
    if verdict is Verdict.Successful:
        return f"{shown}: within {allowed} with {conf} confidence"
    need = f"~{n_min} candidate observations planned" if n_min is not None else "no plan"
    return f"{shown}: not yet decisive at {n:.0f} observations ({need}; limit {allowed})"


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _safe_ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if b <= 0:
        return math.inf if a > 0 else 1.0
    return a / b


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else ("inf" if x > 0 else "-")


def _signed(x: float) -> str:
    return f"{x:+.3g}" if math.isfinite(x) else "inf"


def _ms(x: float) -> str:
    return f"{x * 1000:.3g}ms" if math.isfinite(x) else "-"


__all__ = [
    "ConfidenceSequence",
    "Judgement",
    "Side",
    "judge_failing_share",
    "judge_quantile",
    "judge_rank",
    "judge_shares",
    "window_alpha",
]
