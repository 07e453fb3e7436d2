"""Always-valid comparisons of two versions: confidence sequences (pure, no I/O).

A comparative gate looks at the same cumulative counts every analysis interval
and stops the first time they are decisive. A fixed-sample test (a z-test, a
chi-square) checked that way rejects far more often than its level says; a
*confidence sequence* does not: it covers the true value at every look at once,
with probability at least ``1 - alpha``, so a rollout may check it as often as
it likes and stop whenever it crosses (Howard, Ramdas, McAuliffe, Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
2021; Waudby-Smith et al., "Time-uniform central limit theory and asymptotic
confidence sequences", Ann. Statist. 2024).

Two closed forms are used, written out here because no maintained package
provides them for Python 3.11 without a compiler (``confseq`` ships no wheels;
scipy has no sequential tests):

* the **normal-mixture boundary** (Howard et al. 2021, eq. (14)): for a sum
  ``S`` with variance process ``V`` (here: an estimate times its information
  ``1/stderr²``), ``|S - V·θ| < sqrt((V + ρ) log((V + ρ) / (ρ α²)))`` holds at
  every ``V`` with probability ``1 - α``. Applied to an asymptotically normal
  estimate with an estimated variance it is an asymptotic confidence sequence
  (Waudby-Smith et al. 2024, Theorem 2.2): used for differences of proportions,
  for the rank (Mann-Whitney) effect of two histograms, and for class shares.
* the **beta-binomial mixture** for one proportion (Howard et al. 2021, Section
  3.3; the prior-posterior ratio of Waudby-Smith and Ramdas): exact for
  Bernoulli counts at any sample size, used for the quantile bands of a latency
  histogram, where a quantile sits in a tail and a normal approximation is poor.

Both are checked against references in ``tests/kanaria/test_analysis_sequential.py``:
the boundary against numerical integration of the mixture it comes from, and
the error rates against a seeded simulation of repeated looks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


# --------------------------------------------------------------------------- boundaries


def mixture_rho(planned_info: float, alpha: float) -> float:
    """The mixture precision ``ρ`` that makes the two-sided normal-mixture boundary
    tightest at information ``planned_info`` (Howard et al. 2021, Section 3.5:
    ``ρ = V* / (2 log(1/α) + log(1 + 2 log(1/α)))``). Chosen from the gate's margin
    before any data, so that the data cannot pick the boundary they cross."""
    two_log = 2.0 * math.log(1.0 / alpha)
    return planned_info / (two_log + math.log1p(two_log))


def mixture_boundary(info: float, rho: float, alpha: float) -> float:
    """``u(V) = sqrt((V + ρ) log((V + ρ) / (ρ α²)))``: the two-sided normal-mixture
    boundary on the sum scale at information ``V = info``."""
    v = info + rho
    return math.sqrt(v * math.log(v / (rho * alpha * alpha)))


def mixture_radius(stderr: float, rho: float, alpha: float) -> float:
    """Half-width, on the estimate's own scale, of the confidence sequence of an
    asymptotically normal estimate with standard error ``stderr``: ``u(I) / I`` with
    information ``I = 1/stderr²``. Infinite without information."""
    if not stderr > 0 or math.isinf(stderr):
        return math.inf
    info = 1.0 / (stderr * stderr)
    return mixture_boundary(info, rho, alpha) / info


def planned_info(margin: float, alpha: float, power: float) -> float:
    """Information (``1/stderr²``) a fixed-sample test would need to tell an effect of
    ``margin`` from none at level ``alpha`` with ``power``: where the mixture is tuned."""
    z = _NORMAL.inv_cdf(1.0 - alpha / 2.0) + _NORMAL.inv_cdf(power)
    return (z / margin) ** 2 if margin > 0 else 1.0


# --------------------------------------------------------------------------- one estimate


@dataclass(frozen=True)
class ConfidenceSequence:
    """An estimate with its confidence-sequence interval at this look."""

    estimate: float
    lower: float
    upper: float
    stderr: float
    """Standard error of the estimate (smoothed; see the functions that build it)."""
    radius: float
    """Half-width of the interval: ``u(I)/I``."""

    @property
    def statistic(self) -> float:
        """The estimate in standard errors (a z statistic; 0 without information)."""
        return self.estimate / self.stderr if self.stderr > 0 else 0.0

    @property
    def boundary(self) -> float:
        """The interval's half-width in standard errors: the z a crossing needs now."""
        return self.radius / self.stderr if self.stderr > 0 else math.inf


def normal_sequence(estimate: float, stderr: float, rho: float, alpha: float) -> ConfidenceSequence:
    """The asymptotic confidence sequence ``estimate ± u(I)/I`` (Waudby-Smith et al.)."""
    r = mixture_radius(stderr, rho, alpha)
    return ConfidenceSequence(estimate, estimate - r, estimate + r, stderr, r)


def _smoothed_var(events: float, n: float) -> float:
    """Bernoulli variance with one event and one non-event added (Agresti and Caffo
    2000): never zero, so a version with no errors yet is not infinitely sure."""
    p = (events + 1.0) / (n + 2.0)
    return p * (1.0 - p)


def contrast_sequence(
    x_c: float, n_c: float, x_s: float, n_s: float, k: float, rho: float, alpha: float
) -> ConfidenceSequence:
    """Confidence sequence of ``p_c - k·p_s`` from ``x`` events in ``n`` trials per
    version (``k = 1``: the difference; ``k = 1 + margin``: a relative margin)."""
    if n_c <= 0 or n_s <= 0:
        return ConfidenceSequence(math.nan, -math.inf, math.inf, math.inf, math.inf)
    estimate = x_c / n_c - k * x_s / n_s
    var = _smoothed_var(x_c, n_c) / n_c + k * k * _smoothed_var(x_s, n_s) / n_s
    return normal_sequence(estimate, math.sqrt(var), rho, alpha)


# --------------------------------------------------------------------------- sample size


def min_sample_size(
    rate: float,
    ratio: float,
    margin: float,
    relative: bool,
    alpha: float,
    power: float,
    rho: float,
    limit: int = 1_000_000_000,
) -> int | None:
    """Candidate requests needed for identical versions (both at ``rate``) to be shown
    within ``margin`` with probability ``power``, when the stable gets ``ratio`` times
    as many requests as the candidate: the smallest ``n`` with
    ``margin' ≥ u(I)/I + z_power·stderr`` (``margin' = margin·rate`` for a relative
    margin). None when no sample size is enough (a relative margin on a rate of 0)."""
    k = 1.0 + margin if relative else 1.0
    gap = margin * rate if relative else margin
    if gap <= 0:
        return None
    z = _NORMAL.inv_cdf(power)
    # The interval's upper end is where the test at the limit stops rejecting, and that
    # test takes its variance under the limit (``p_c = k·p_s + shift``, the common rate
    # from both versions' pooled counts; kanaria.analysis.compare._null_stderr): for
    # identical versions at ``rate`` the pooled stable rate is below ``rate`` and the
    # candidate's above it by the margin. Planning with the variance at ``rate`` itself
    # promised far too few requests for a stable with few or no failures (at 0% and a
    # 0.01 margin a third to a fifth of what a verdict needs).
    shift = 0.0 if relative else margin
    ps = min(max(rate * (1.0 + ratio) / (k + ratio) - shift / (1.0 + ratio), 0.0), 1.0)
    pc = min(max(k * ps + shift, 0.0), 1.0)
    var_c = max(pc * (1.0 - pc), 1e-12)
    var_s = max(ps * (1.0 - ps), 1e-12)

    def enough(n: float) -> bool:
        stderr = math.sqrt(var_c / n + k * k * var_s / (ratio * n))
        return gap >= mixture_radius(stderr, rho, alpha) + z * stderr

    hi = 1
    while not enough(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- one proportion, exact


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def proportion_sequence(
    x: float, n: float, alpha: float, a: float = 0.5, b: float = 0.5
) -> tuple[float, float]:
    """Exact confidence sequence ``[lower, upper]`` for a Bernoulli mean after ``x``
    events in ``n`` trials: the ``p`` whose beta-binomial mixture martingale
    ``B(a+x, b+n-x) / (B(a, b) p^x (1-p)^(n-x))`` is still below ``1/α`` (a Beta(a, b)
    mixture; Jeffreys' prior by default)."""
    if n <= 0:
        return 0.0, 1.0
    x = min(max(x, 0.0), n)
    log_mix = _log_beta(a + x, b + n - x) - _log_beta(a, b)
    limit = math.log(1.0 / alpha)

    def inside(p: float) -> bool:
        loglik = (x * math.log(p) if x > 0 else 0.0) + (
            (n - x) * math.log1p(-p) if n - x > 0 else 0.0
        )
        return log_mix - loglik < limit

    centre = x / n

    def edge(outside: float, inner: float) -> float:
        lo, hi = outside, inner
        for _ in range(36):
            mid = (lo + hi) / 2.0
            if inside(mid):
                hi = mid
            else:
                lo = mid
        return hi

    eps = 1e-12
    inner = min(max(centre, eps), 1.0 - eps)
    lower = 0.0 if inside(eps) else edge(eps, inner)
    upper = 1.0 if inside(1.0 - eps) else edge(1.0 - eps, inner)
    return lower, upper


# --------------------------------------------------------------------------- histograms


def bucket_counts(cumulative: Mapping[float, float]) -> list[tuple[float, float]]:
    """``(le, count in that bucket)`` from Prometheus' cumulative ``le`` buckets, sorted,
    ``+Inf`` last; negative steps (a scrape between bucket updates) count as 0."""
    out: list[tuple[float, float]] = []
    prev = 0.0
    for le in sorted(cumulative):
        c = cumulative[le]
        out.append((le, max(c - prev, 0.0)))
        prev = max(prev, c)
    return out


def interpolated_quantile(q: float, edges: Sequence[float], cdf: Sequence[float]) -> float:
    """The ``q`` quantile of a bucketed distribution given its CDF at the finite bucket
    edges, interpolated linearly inside a bucket from 0 as PromQL's
    ``histogram_quantile`` does; the last finite edge when it lies beyond them.
    Monotone: a CDF that is higher everywhere gives a quantile no larger."""
    prev_le, prev_f = 0.0, 0.0
    for le, f in zip(edges, cdf, strict=True):
        if f >= q:
            if f == prev_f:
                return le
            return prev_le + (le - prev_le) * (q - prev_f) / (f - prev_f)
        prev_le, prev_f = le, f
    return edges[-1] if edges else math.nan


@dataclass(frozen=True)
class QuantileBand:
    """A quantile of one version's latency histogram with its confidence band."""

    estimate: float
    lower: float
    upper: float
    requests: float


def quantile_band(q: float, cumulative: Mapping[float, float], alpha: float) -> QuantileBand:
    """Quantile ``q`` (interpolated as ``histogram_quantile``) of cumulative bucket
    counts, and its band from exact proportion sequences for the CDF at every finite
    edge (simultaneous by a union bound over the edges, ``alpha`` in all)."""
    finite = sorted(le for le in cumulative if math.isfinite(le))
    n = max(cumulative.values(), default=0.0)
    if math.inf in cumulative:
        n = cumulative[math.inf]
    if n <= 0 or not finite:
        return QuantileBand(math.nan, 0.0, math.inf, n)
    running = 0.0
    hits: list[float] = []
    for le in finite:
        running = min(max(running, cumulative[le]), n)
        hits.append(running)
    each = alpha / len(finite)
    lo_cdf: list[float] = []
    hi_cdf: list[float] = []
    for h in hits:
        lo, hi = proportion_sequence(h, n, each)
        lo_cdf.append(max(lo, lo_cdf[-1] if lo_cdf else 0.0))
        hi_cdf.append(max(hi, hi_cdf[-1] if hi_cdf else 0.0))
    point = interpolated_quantile(q, finite, [h / n for h in hits])
    # A CDF band that never reaches q leaves the quantile unbounded above.
    upper = interpolated_quantile(q, finite, lo_cdf) if lo_cdf[-1] >= q else math.inf
    lower = interpolated_quantile(q, finite, hi_cdf)
    return QuantileBand(point, lower, upper, n)


def rank_effect(
    candidate: Mapping[float, float], stable: Mapping[float, float]
) -> tuple[float, float, float, float]:
    """The Mann-Whitney effect of two latency histograms, ``θ = P(X_c > X_s) + ½P(X_c =
    X_s)`` (a request in the same bucket is a tie), minus ½, with its DeLong standard
    error: ``(θ - ½, stderr, n_c, n_s)``. ``θ - ½ > 0`` means the candidate tends to be
    slower. The standard error has a floor of one discordant pair's worth, so two
    histograms in a single bucket are not infinitely sure."""
    c = bucket_counts(candidate)
    s = bucket_counts(stable)
    edges = sorted({le for le, _ in c} | {le for le, _ in s})
    cc = dict(c)
    ss = dict(s)
    cn = [cc.get(le, 0.0) for le in edges]
    sn = [ss.get(le, 0.0) for le in edges]
    n_c, n_s = sum(cn), sum(sn)
    if n_c <= 0 or n_s <= 0:
        return math.nan, math.inf, n_c, n_s
    # Placement of a candidate request in bucket j among the stable's, and vice versa.
    below_s = 0.0
    place_c: list[float] = []
    for v in sn:
        place_c.append((below_s + 0.5 * v) / n_s)
        below_s += v
    above_c = n_c
    place_s: list[float] = []
    for v in cn:
        above_c -= v
        place_s.append((above_c + 0.5 * v) / n_c)
    theta = sum(w * p for w, p in zip(cn, place_c, strict=True)) / n_c
    var_c = sum(w * (p - theta) ** 2 for w, p in zip(cn, place_c, strict=True)) / max(n_c - 1, 1)
    var_s = sum(w * (p - (1 - theta)) ** 2 for w, p in zip(sn, place_s, strict=True)) / max(
        n_s - 1, 1
    )
    var = var_c / n_c + var_s / n_s
    var = max(var, 0.25 / (n_c * n_s))
    return theta - 0.5, math.sqrt(var), n_c, n_s
