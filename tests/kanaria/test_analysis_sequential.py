"""The closed forms of kanaria.analysis.sequential against references.

* the normal-mixture boundary against the mixture it comes from, integrated
  numerically: at the boundary the mixture martingale equals exactly 1/alpha;
* the beta-binomial sequence against its definition and a published property
  (it always contains the point estimate, and shrinks like sqrt(log n / n));
* the error rates of repeated looks against a seeded simulation: identical
  versions checked after every batch of requests must cross the boundary in at
  most alpha of the runs, which a fixed-sample z-test at the same level does not.
"""

from __future__ import annotations

import math
import random

import pytest

from kanaria.analysis.compare import Side, judge_failing_share
from kanaria.analysis.sequential import (
    bucket_counts,
    interpolated_quantile,
    min_sample_size,
    mixture_boundary,
    mixture_rho,
    planned_info,
    proportion_sequence,
    quantile_band,
    rank_effect,
)
from kanaria.api import Compare, Verdict


def mixture_martingale(s: float, v: float, rho: float, steps: int = 20000) -> float:
    """∫ exp(λ s - λ² v / 2) dN(0, 1/ρ)(λ), by the trapezoid rule over ±12 sd."""
    sd = 1.0 / math.sqrt(rho)
    lo, hi = -12 * sd, 12 * sd
    h = (hi - lo) / steps
    total = 0.0
    for i in range(steps + 1):
        lam = lo + i * h
        density = math.exp(-0.5 * (lam / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        w = 0.5 if i in (0, steps) else 1.0
        total += w * math.exp(lam * s - lam * lam * v / 2) * density
    return total * h


@pytest.mark.parametrize(("v", "rho", "alpha"), [(10.0, 1.0, 0.05), (250.0, 30.0, 0.01)])
def test_normal_mixture_boundary_is_where_the_mixture_reaches_one_over_alpha(
    v: float, rho: float, alpha: float
) -> None:
    u = mixture_boundary(v, rho, alpha)
    assert mixture_martingale(u, v, rho) == pytest.approx(1 / alpha, rel=1e-6)
    assert mixture_martingale(0.9 * u, v, rho) < 1 / alpha


def test_rho_is_the_tightest_at_the_planned_information() -> None:
    alpha, planned = 0.01, 400.0
    rho = mixture_rho(planned, alpha)
    best = min(mixture_boundary(planned, r / 100, alpha) for r in range(1, 10000))
    assert mixture_boundary(planned, rho, alpha) == pytest.approx(best, rel=1e-3)


def test_proportion_sequence_is_the_set_below_one_over_alpha() -> None:
    x, n, alpha = 30.0, 1000.0, 0.01
    lo, hi = proportion_sequence(x, n, alpha)
    assert lo < x / n < hi

    def log_martingale(p: float) -> float:
        log_mix = (
            math.lgamma(0.5 + x)
            + math.lgamma(0.5 + n - x)
            - math.lgamma(1 + n)
            - (2 * math.lgamma(0.5) - math.lgamma(1.0))
        )
        return log_mix - x * math.log(p) - (n - x) * math.log1p(-p)

    assert log_martingale(lo) == pytest.approx(math.log(1 / alpha), abs=1e-6)
    assert log_martingale(hi) == pytest.approx(math.log(1 / alpha), abs=1e-6)
    wide = proportion_sequence(3, 100, alpha)
    assert wide[1] - wide[0] > hi - lo


def test_identical_versions_cross_rarely_however_often_they_are_checked() -> None:
    """Seeded simulation: 1% errors in both versions, the candidate on 10% of traffic,
    checked after every 300 candidate requests up to 18,000. A Failed verdict against a
    margin of 0 (any increase) must happen in at most alpha of the runs; a fixed-sample
    z-test at the same level, checked the same way, exceeds it several times over."""
    rng = random.Random(12)
    alpha, runs, looks, per = 0.05, 200, 60, 300
    compare = Compare(margin=0.0, confidence=1 - alpha)
    failed = naive = 0
    for _ in range(runs):
        xc = xs = 0
        crossed = naive_crossed = False
        for look in range(1, looks + 1):
            xc += _binomial(rng, per, 0.01)
            xs += _binomial(rng, 9 * per, 0.01)
            nc, ns = look * per, look * 9 * per
            j = judge_failing_share(Side("c", nc, xc), Side("s", ns, xs), compare, 1, None)
            crossed = crossed or j.verdict is Verdict.Failed
            pc, ps = xc / nc, xs / ns
            se = math.sqrt(max(pc * (1 - pc), 1e-9) / nc + max(ps * (1 - ps), 1e-9) / ns)
            naive_crossed = naive_crossed or (pc - ps) / se > 1.645
            if crossed:
                break
        failed += crossed
        naive += naive_crossed
    assert failed / runs <= alpha
    assert naive / runs > 2 * alpha


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """An exact binomial draw by geometric jumps between successes (fast for small p)."""
    count, at, log_q = 0, -1, math.log1p(-p)
    while True:
        at += int(math.log(1.0 - rng.random()) / log_q) + 1
        if at >= n:
            return count
        count += 1


def test_a_worse_candidate_is_failed_and_an_identical_one_passes() -> None:
    compare = Compare(margin=0.005)
    worse = judge_failing_share(Side("c", 20000, 400), Side("s", 180000, 1800), compare, 11, None)
    assert worse.verdict is Verdict.Failed
    same = judge_failing_share(Side("c", 20000, 200), Side("s", 180000, 1800), compare, 11, None)
    assert same.verdict is Verdict.Successful
    early = judge_failing_share(Side("c", 200, 4), Side("s", 1800, 18), compare, 11, None)
    assert early.verdict is Verdict.Inconclusive
    assert early.comparison.minSampleSize is not None
    assert 1000 < early.comparison.minSampleSize < 100000


def test_relative_margin_uses_the_ratio() -> None:
    compare = Compare(margin=0.5, relative=True)
    j = judge_failing_share(Side("c", 20000, 400), Side("s", 180000, 1800), compare, 1, None)
    assert j.comparison.test == "ratio"
    assert j.comparison.estimate == pytest.approx(2.0)
    assert j.verdict is Verdict.Failed
    assert j.comparison.lower is not None
    assert j.comparison.lower > 1.5


def test_min_sample_size_shrinks_with_a_wider_margin_and_grows_with_power() -> None:
    rho = mixture_rho(planned_info(0.005, 0.001, 0.8), 0.001)
    narrow = min_sample_size(0.01, 9, 0.005, False, 0.001, 0.8, rho)
    wide = min_sample_size(0.01, 9, 0.01, False, 0.001, 0.8, rho)
    strong = min_sample_size(0.01, 9, 0.005, False, 0.001, 0.95, rho)
    assert narrow is not None
    assert wide is not None
    assert strong is not None
    assert wide < narrow < strong
    assert min_sample_size(0.0, 9, 0.5, True, 0.001, 0.8, rho) is None


BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def _histogram(rng: random.Random, n: int, scale: float, tail: float = 0.0) -> dict[float, float]:
    """Cumulative buckets of ``n`` lognormal latencies (median ``scale``), a share
    ``tail`` of them 4x slower."""
    counts = dict.fromkeys((*BUCKETS, math.inf), 0.0)
    for _ in range(n):
        x = scale * math.exp(rng.gauss(0, 0.3)) * (4 if rng.random() < tail else 1)
        for le in counts:
            if x <= le:
                counts[le] += 1
    return counts


def test_histogram_helpers_agree_with_promql() -> None:
    cum = {0.01: 10.0, 0.05: 60.0, 0.1: 100.0, math.inf: 100.0}
    assert bucket_counts(cum) == [(0.01, 10.0), (0.05, 50.0), (0.1, 40.0), (math.inf, 0.0)]
    # histogram_quantile(0.5): rank 50 in the (0.01, 0.05] bucket, 40 of its 50 counts in.
    assert interpolated_quantile(0.5, [0.01, 0.05, 0.1], [0.1, 0.6, 1.0]) == pytest.approx(0.042)


def test_quantile_band_holds_the_quantile_and_rank_effect_sees_a_shift() -> None:
    rng = random.Random(3)
    stable = _histogram(rng, 4000, 0.02)
    same = _histogram(rng, 4000, 0.02)
    slower = _histogram(rng, 4000, 0.024)
    band = quantile_band(0.5, stable, 0.01)
    assert band.lower <= band.estimate <= band.upper
    effect_same, se_same, _, _ = rank_effect(same, stable)
    effect_slow, se_slow, _, _ = rank_effect(slower, stable)
    assert abs(effect_same) < 3 * se_same
    assert effect_slow > 0.1
    assert effect_slow > 5 * se_slow


@pytest.mark.parametrize("rate", [0.0, 0.001, 0.01, 0.05])
@pytest.mark.parametrize(("margin", "windows", "split"), [(0.01, 2, 1), (0.005, 11, 9)])
def test_the_planned_size_is_enough_for_identical_versions_at_their_expected_counts(
    rate: float, margin: float, windows: int, split: int
) -> None:
    """At the planned sample size (power 0.8 > 1/2), identical versions whose counts sit
    at their expectation are shown within the margin; and not long before it, so the
    plan is not padded. The plan once used the variance at the stable's own rate, while
    the interval's upper end is tested under the limit: for a stable with no failures
    it promised a third to a fifth of the requests a verdict needs, and Inconclusive
    past 4x that plan counted towards inconclusiveLimit on a healthy candidate."""
    compare = Compare(margin=margin)

    def at(n: int) -> Verdict:
        c = Side("c", n, rate * n)
        s = Side("s", split * n, rate * split * n)
        return judge_failing_share(c, s, compare, windows, None).verdict

    probe = judge_failing_share(
        Side("c", 1000, rate * 1000),
        Side("s", split * 1000, rate * split * 1000),
        compare,
        windows,
        None,
    )
    planned = probe.comparison.minSampleSize
    assert planned is not None
    assert at(planned) is Verdict.Successful, planned
    assert at(planned // 4) is Verdict.Inconclusive, planned
