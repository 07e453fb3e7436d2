"""The two gate sources agree on the same traffic.

``kanaria up`` measures the built-in gates either with the PromQL templates
(:mod:`kanaria.analysis.templates`) on a real Prometheus or, without one, with the
embedded scraper (:mod:`kanaria.local.embedded`). Here one real ``kanaria up``
(router, model servers, its Prometheus) serves real traffic: v1 answers clients
(a fifth of its answers are 500s on purpose), v2 gets every request as a shadow
copy, both have a reference profile, and clients send labels back. An embedded
scraper in the test reads the same processes. Every built-in gate is then measured
both ways, for both places requests are counted (v1 at the router, v2 at its
model server), over the same window.

Why the values must agree, and how closely:

- Ratios (successRate, errorRate, shadowAgreement, accuracy) and latencyP99 agree
  to rounding. PromQL's ``increase`` extrapolates each series' increase to the
  window's edges, but by the same factor for every series of one target (same
  scrape timestamps), and numerator and denominator (or all histogram buckets)
  come from one target, so the factor cancels. One PromQL rule could break that:
  a series is not extrapolated past the point where it would reach zero. A
  warm-up before the window gives every series a count far larger than its rate
  times one scrape interval, so that rule never applies (the test checks it).
  Series that appear inside a window are also the one case where the two differ by
  design (Prometheus ignores a new series' first sample; the scraper counts it from
  zero); the warm-up creates them all before the window.
- Counts (what ``minRequests`` compares) differ by exactly that extrapolation:
  the scraper's count is the true increase ``n``; Prometheus reports ``n`` scaled by
  window / sampled span, and the sampled span misses at most one scrape interval
  at each end, so ``n <= prometheus <= n * W / (W - 2 * scrape interval)``.
- Comparative gates (``compare:``, issue 12) read cumulative counts of both
  versions since a step began: requests and 5xx, latency buckets by ``le``,
  output classes. Each count obeys the count bound above, with ``W`` the whole
  seconds the gate's window spans (its PromQL range), and the two sources must
  reach the same verdict. The margins are chosen so that each verdict is far from
  its boundary: the extrapolation (a few percent more counts through PromQL)
  narrows an interval a little but cannot move it across the limit.
- inputDrift is a gauge sampled by two scrapers at different moments; while
  traffic flows its value moves between their samples, so the maximum over a
  window of traffic is only equal when both saw the same moments. It is compared
  over the quiet window after the traffic, when the drift of the last rows is
  fixed, and must then be equal.
"""

from __future__ import annotations

import math
import random
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
import numpy as np
import pytest

from kanaria import metric_names as names
from kanaria.analysis import MetricQuery, MetricSource, PrometheusSource
from kanaria.analysis.measure import (
    comparison_queries,
    comparison_window,
    measure_comparison,
    queries,
)
from kanaria.analysis.source import VectorSource
from kanaria.api import Builtin, Compare, Measurement, MetricGate, Verdict
from kanaria.local.embedded import EmbeddedSource
from kanaria.local.prometheus import SCRAPE_INTERVAL_S
from kanaria.local.scrape import Scraper, Series, parse
from kanaria.local.traffic import infer_body
from kanaria.rollout import MeasurementRequest
from kanaria.rollout.gates import ComparisonRequest
from tests.kanaria.local.harness import NAME, WIDTH, Up, build_models, md
from tests.support.procs import kanaria, require_binary, wait_until

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

WARMUP = 160
"""Requests before the window: each series starts the window with a large count."""
MEASURED = 240
"""Requests inside the window."""
SHADOW = {"shadow": {"mirrorPercent": 100, "graduateTo": "none", "duration": "1h"}}
RATIO_TOLERANCE = 1e-9
"""Relative: the same extrapolation factor cancels, so only float rounding is left."""

GATES: dict[str, list[Builtin]] = {
    # v1 answers clients: its requests are counted at the router
    "v1": [
        Builtin.successRate,
        Builtin.errorRate,
        Builtin.latencyP99,
        Builtin.accuracy,
    ],
    # v2 only gets copies: counted at its model server, compared at the router
    "v2": [
        Builtin.successRate,
        Builtin.errorRate,
        Builtin.latencyP99,
        Builtin.shadowAgreement,
    ],
}
TRAFFIC: dict[str, Literal["router", "server"]] = {"v1": "router", "v2": "server"}

COMPARE_GATES: dict[Builtin, tuple[float, Verdict]] = {
    # both versions fail a fifth of their requests: the difference is near 0, its
    # interval at ~240 requests each about +-0.12, far below the margin
    Builtin.successRate: (0.3, Verdict.Successful),
    # same servers, same inputs: P(v2 slower) - 1/2 near 0, far below the margin
    Builtin.latencyDistribution: (0.45, Verdict.Successful),
    # v1 and v2 are different models: class shares differ by ~0.3 on these inputs
    Builtin.outputDistribution: (0.05, Verdict.Failed),
}
"""Compare gates of v2 (the shadow, counted at its model server) against v1: margin and
the verdict both sources must reach."""


class Targets:
    """The /metrics endpoints of the router and both model servers, read directly."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.client = httpx.Client(timeout=5)

    def read(self) -> dict[str, Series]:
        return {name: parse(self.client.get(url).text) for name, url in self.urls.items()}


def _totals(series_by_target: dict[str, Series]) -> dict[str, float]:
    """Sum of every counter sample per (target, sample name): a fingerprint of the state."""
    totals: dict[str, float] = {}
    for target, series in series_by_target.items():
        for (sample, _labels), value in series.items():
            if sample.endswith(("_total", "_count")) and sample.startswith("kanaria_"):
                key = f"{target}/{sample}"
                totals[key] = totals.get(key, 0.0) + value
    return totals


def _prometheus_totals(url: str, keys: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    with httpx.Client(timeout=5) as client:
        for key in keys:
            target, sample = key.split("/", 1)
            promql = f'sum({sample}{{component="{target}"}})'
            result = client.get(f"{url}/api/v1/query", params={"query": promql}).json()
            values = result["data"]["result"]
            out[key] = float(values[0]["value"][1]) if values else math.nan
    return out


class WatchedScraper(Scraper):
    """The embedded scraper, also telling the test what it has recorded and when."""

    def __init__(self) -> None:
        super().__init__(interval_s=SCRAPE_INTERVAL_S)
        self.newest: dict[str, Series] = {}
        self.times: dict[str, list[float]] = {}

    def record(self, name: str, series: Series, t: float) -> None:
        super().record(name, series, t)
        self.newest[name] = series
        self.times.setdefault(name, []).append(t)

    def scraped_twice_since(self, after: float) -> bool:
        return all(
            sum(1 for t in self.times.get(name, []) if t > after) >= 2 for name in self.targets()
        )


def _settled(targets: Targets, scraper: WatchedScraper, prometheus_url: str) -> Callable[[], bool]:
    """True once the processes' counters stopped moving and both sources have them."""
    previous: dict[str, float] = {}

    def check() -> bool:
        now = _totals(targets.read())
        stable = now == previous
        previous.clear()
        previous.update(now)
        if not stable:
            return False
        embedded = _totals(dict(scraper.newest))
        return embedded == now and _prometheus_totals(prometheus_url, list(now)) == now

    return check


def _more_samples(scraper: WatchedScraper, prometheus_url: str, after: float) -> Callable[[], bool]:
    """True once both sources have scraped every target at least twice after ``after``."""

    def check() -> bool:
        with httpx.Client(timeout=5) as client:
            result = client.get(
                f"{prometheus_url}/api/v1/query",
                params={"query": f"min(timestamp(up)) > {after + SCRAPE_INTERVAL_S}"},
            ).json()
        return bool(result["data"]["result"]) and scraper.scraped_twice_since(after)

    return check


GATE_SAMPLES = {
    names.ROUTER_REQUESTS,
    f"{names.ROUTER_LATENCY}_bucket",
    names.SERVER_REQUESTS,
    f"{names.SERVER_LATENCY}_bucket",
    names.SHADOW_COMPARISONS,
    names.FEEDBACK,
}


def _gate_series(
    before: dict[str, Series], after: dict[str, Series]
) -> dict[tuple[str, str, frozenset[tuple[str, str]]], tuple[float, float]]:
    """(count before, count after) of each series a gate reads; for histograms only the
    buckets at or above the one the 0.99 quantile falls in."""
    out: dict[tuple[str, str, frozenset[tuple[str, str]]], tuple[float, float]] = {}
    for target, series in after.items():
        for (sample, labels), value in series.items():
            if sample not in GATE_SAMPLES or dict(labels).get("model") != NAME:
                continue
            if dict(labels).get("result") in ("error", "unknown"):
                continue  # no gate reads these results
            if dict(labels).get("endpoint", "infer") != "infer":
                continue
            out[(target, sample, labels)] = (before[target].get((sample, labels), 0.0), value)
    for key in list(out):
        target, sample, labels = key
        if not sample.endswith("_bucket"):
            continue
        rest = {k: v for k, v in labels if k != "le"}
        siblings = {
            float(dict(other)["le"]): out[(t, s, other)][1] - out[(t, s, other)][0]
            for (t, s, other) in out
            if t == target and s == sample and {k: v for k, v in other if k != "le"} == rest
        }
        total = max(siblings.values())
        p99_le = min(le for le, n in siblings.items() if n >= 0.99 * total)
        lower = max((le for le in siblings if le < p99_le), default=0.0)
        if float(dict(labels)["le"]) < lower:
            del out[key]
    return out


def _send(url: str, n: int, seed: int) -> None:
    """``n`` predictions through the router, each followed by its delayed label."""
    infer = f"{url}/v2/models/{NAME}/infer"
    feedback = f"{url}/v2/models/{NAME}/feedback"

    def one(i: int) -> None:
        local = random.Random(seed * 100_000 + i)
        with httpx.Client(timeout=10) as client:
            response = client.post(infer, json=infer_body(WIDTH, local, shift=0.7))
            if response.status_code == 200:
                label = local.randrange(4)
                request_id = response.headers["x-request-id"]
                client.post(feedback, json={"id": request_id, "label": label})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))


def _measure_all(
    source: MetricSource, window: str, at: datetime
) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for version, builtins in GATES.items():
        for builtin in builtins:
            request = MeasurementRequest(
                purpose="analysis",
                version=version,
                gate=MetricGate(name="gate", builtin=builtin, min=0),
                interval=window,
                traffic=TRAFFIC[version],
            )
            value_q, count_q = queries(request, NAME, None)
            out[(version, str(builtin), "value")] = source.measure(value_q, at)
            out[(version, str(builtin), "count")] = source.measure(count_q, at)
    return out


def _compare_all(
    source: MetricSource, since: datetime, at: datetime
) -> dict[Builtin, tuple[Measurement, dict[str, float]]]:
    """Each compare gate of v2 against v1 since ``since``, judged at ``at``: the
    measurement, and every count it was judged on (``version/what[/key]``)."""
    out: dict[Builtin, tuple[Measurement, dict[str, float]]] = {}
    for builtin, (margin, _) in COMPARE_GATES.items():
        request = ComparisonRequest(
            purpose="analysis",
            version="v2",
            gate=MetricGate(name="vs-stable", builtin=builtin, compare=Compare(margin=margin)),
            interval="1s",
            traffic="server",
            against="v1",
            since=since,
        )
        counts: dict[str, float] = {}
        for version, by_what in comparison_queries(request, NAME, None, at).items():
            for what, q in by_what.items():
                if q.kind in ("buckets", "classes"):
                    assert isinstance(source, VectorSource)
                    for key, value in source.measure_vector(q, at).items():
                        counts[f"{version}/{what}/{key}"] = value
                else:
                    counts[f"{version}/{what}"] = source.measure(q, at)
        out[builtin] = (measure_comparison(source, request, NAME, None, at), counts)
    return out


def _drift(source: MetricSource, window: str, at: datetime) -> dict[str, float]:
    out = {}
    for version in ("v1", "v2"):
        request = MeasurementRequest(
            purpose="retraining",
            version=version,
            gate=MetricGate(name="drift", builtin=Builtin.inputDrift, max=1),
            interval=window,
        )
        value_q: MetricQuery = queries(request, NAME, None)[0]
        out[version] = source.measure(value_q, at)
    return out


def _ms(seconds: float) -> str:
    return f"{math.floor(seconds * 1000)}ms"


def test_embedded_and_promql_gates_agree_on_the_same_traffic(tmp_path: Path) -> None:
    binary = require_binary("prometheus", "the parity test compares against a real one")
    models = build_models(tmp_path / "models")
    sample = tmp_path / "reference.npy"
    np.save(sample, np.random.default_rng(0).normal(size=(2000, WIDTH)).astype(np.float32))
    profiles = {}
    for version in ("v1", "v2"):
        profiles[version] = tmp_path / f"{version}.profile.json"
        subprocess.run(
            kanaria("profile", "--model", str(models[version]), "--data", str(sample),
                    "-o", str(profiles[version])),
            check=True,
            capture_output=True,
        )  # fmt: skip
    up = Up(tmp_path, binary)
    scraper = WatchedScraper()
    try:
        chaos = ["--chaos-error-rate", "0.2"]
        first = md("v1", models["v1"], SHADOW, server_args=chaos, metrics=[])
        first["spec"]["model"]["referenceProfile"] = str(profiles["v1"])
        up.start(first)
        second = md("v2", models["v2"], SHADOW, server_args=chaos, metrics=[])
        second["spec"]["model"]["referenceProfile"] = str(profiles["v2"])
        up.apply(second)
        up.wait(
            "v2 mirrored",
            lambda s: bool(s.get("mirror")) and s.get("phase") == "Progressing",
        )
        state = up.dir.load()
        assert state.router is not None
        assert state.prometheus is not None
        servers = {v: r.process for v, r in state.versions.items() if v in ("v1", "v2")}
        assert all(p is not None for p in servers.values())
        urls = {"router": f"http://127.0.0.1:{state.router.port}/metrics"}
        urls.update(
            {f"server-{v}": f"http://127.0.0.1:{p.port}/metrics" for v, p in servers.items() if p}
        )
        prometheus_url = f"http://127.0.0.1:{state.prometheus.port}"
        targets = Targets(urls)
        wait_until(lambda: all(bool(s) for s in targets.read().values()), 60, "metrics")
        scraper.set_targets(urls)
        scraper.start()

        # Warm-up: every series exists, with a large count, before the window.
        _send(up.url, WARMUP, seed=1)
        wait_until(_settled(targets, scraper, prometheus_url), 60, "warm-up seen by both")
        quiet_from = time.time()
        # A quiet stretch of over a second: a compare gate's window is whole seconds,
        # so it may begin up to a second before window_start.
        wait_until(_more_samples(scraper, prometheus_url, quiet_from + 1.0), 60, "a quiet stretch")
        window_start = time.time() - SCRAPE_INTERVAL_S  # inside the quiet stretch
        before_series = targets.read()

        _send(up.url, MEASURED, seed=2)
        wait_until(_settled(targets, scraper, prometheus_url), 60, "traffic seen by both")
        settled_at = time.time()
        span = settled_at - window_start

        # No series a gate reads is young enough for PromQL's stop-at-zero rule: its
        # count at the window's start exceeds its increase over one scrape interval
        # (with margin). Histogram buckets below the one holding the p99 do not move it.
        for series_key, (start, end) in _gate_series(before_series, targets.read()).items():
            per_scrape = (end - start) / span * SCRAPE_INTERVAL_S
            assert end == start or start > 2.2 * per_scrape, (series_key, start, end)

        now_s = time.time()
        at = datetime.fromtimestamp(now_s, UTC)
        window_s = now_s - window_start
        window = _ms(window_s)
        embedded = _measure_all(EmbeddedSource(scraper), window, at)
        with PrometheusSource(prometheus_url) as prometheus:
            promql = _measure_all(prometheus, window, at)

        bound = window_s / (window_s - 2 * SCRAPE_INTERVAL_S)
        for gate, ours in embedded.items():
            theirs = promql[gate]
            if gate[2] == "value":
                assert theirs == pytest.approx(ours, rel=RATIO_TOLERANCE), (gate, ours, theirs)
            else:
                assert ours > 0, gate
                assert ours <= theirs + 1e-9, (gate, ours, theirs)
                assert theirs <= ours * bound + 1e-9, (gate, ours, theirs, bound)
        # The traffic produced what each gate reads: no gate passes on an empty value.
        assert 0.6 < embedded[("v1", "successRate", "value")] < 0.95
        assert 0 < embedded[("v2", "shadowAgreement", "value")] < 1
        assert 0 < embedded[("v1", "accuracy", "value")] < 1

        # Comparative gates: v2 against v1, cumulative counts since the window began
        # (the window's whole seconds, as a step's start would give them).
        since = datetime.fromtimestamp(window_start, UTC)
        at = datetime.fromtimestamp(time.time(), UTC)
        seconds = comparison_window(
            ComparisonRequest(
                purpose="analysis",
                version="v2",
                gate=MetricGate(name="w", builtin=Builtin.successRate, compare=Compare(margin=1)),
                interval="1s",
                against="v1",
                since=since,
            ),
            at,
        )
        assert at - timedelta(seconds=seconds) >= datetime.fromtimestamp(quiet_from, UTC)
        compared_embedded = _compare_all(EmbeddedSource(scraper), since, at)
        with PrometheusSource(prometheus_url) as prometheus:
            compared_promql = _compare_all(prometheus, since, at)
        bound = seconds / (seconds - 2 * SCRAPE_INTERVAL_S)
        for builtin, (margin, expected) in COMPARE_GATES.items():
            ours_m, ours_n = compared_embedded[builtin]
            theirs_m, theirs_n = compared_promql[builtin]
            assert set(ours_n) == set(theirs_n), (builtin, sorted(ours_n), sorted(theirs_n))
            assert sum(ours_n.values()) > 0, builtin
            for key, n in ours_n.items():
                assert n <= theirs_n[key] + 1e-9, (builtin, key, n, theirs_n[key])
                assert theirs_n[key] <= n * bound + 1e-9, (builtin, key, n, theirs_n[key], bound)
            assert ours_m.comparison is not None
            assert theirs_m.comparison is not None
            print(
                f"\n[compare {builtin} margin {margin}] embedded {ours_m.verdict} "
                f"[{ours_m.comparison.lower}, {ours_m.comparison.upper}], PromQL "
                f"{theirs_m.verdict} [{theirs_m.comparison.lower}, {theirs_m.comparison.upper}]"
            )
            assert ours_m.verdict is theirs_m.verdict is expected, (builtin, ours_m, theirs_m)
        # Both versions were counted where the shadow's copies are (their servers).
        served = compared_embedded[Builtin.successRate][1]
        assert served["v2/total"] >= MEASURED * 0.9
        assert served["v1/total"] >= MEASURED * 0.9

        # Drift: the gauge over the quiet stretch after the traffic, read by both.
        wait_until(_more_samples(scraper, prometheus_url, settled_at), 60, "quiet samples")
        now_s = time.time()
        at = datetime.fromtimestamp(now_s, UTC)
        quiet = _ms(now_s - settled_at)
        drift_embedded = _drift(EmbeddedSource(scraper), quiet, at)
        with PrometheusSource(prometheus_url) as prometheus:
            drift_promql = _drift(prometheus, quiet, at)
        assert drift_embedded == drift_promql
        assert all(d > 0.05 for d in drift_embedded.values()), drift_embedded
    finally:
        scraper.stop()
        up.stop()
