"""Seeded simulation of rollouts: comparative gates against threshold gates.

Thousands of canary rollouts run through the real engine (``plan_measurements``,
``decide``) and the real gate code (``kanaria.analysis.measure`` with its
comparative and threshold judges); only the traffic is simulated. A metric
source answers every query from counters the simulation keeps per version
(requests by code, latency histogram buckets, output classes), exactly the
numbers Prometheus would hold, so both the cumulative counts of compare gates
and the windowed values of threshold gates are what the real queries ask for.

Each rollout is a 10-step canary (5% to 90%) checked every 30 s interval under
500 requests/s, for at most ``--max-intervals`` intervals (a rollout still
undecided then is reported as held). Scenarios: identical versions at 1% errors,
a candidate at 2% errors, zero traffic, latency 20% slower at p50 with the same
p99, a heavier tail only, and an output-class shift with nothing else changed.
Per scenario and gate set it prints how often the rollout was rolled back,
promoted or held, and the median candidate requests a rollback needed.

    .venv/bin/python -m bench.gates_sim             # ~3-5 minutes on 2 cores
    .venv/bin/python -m bench.gates_sim --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import Pool
from typing import Any

import numpy as np

from kanaria import metric_names as names
from kanaria.analysis import MetricQuery, NoDataError, measure
from kanaria.analysis.templates import DEFAULT_QUANTILE
from kanaria.api import (
    Builtin,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    VersionRef,
)
from kanaria.local.scrape import histogram_quantile
from kanaria.rollout import Observations, VersionObservation, decide, plan_measurements

T0 = datetime(2030, 1, 1, tzinfo=UTC)
INTERVAL_S = 30
RATE = 500.0
"""Client requests per second through the router (both versions together)."""
WEIGHTS = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
"""The 10 steps of the canary (the stable keeps some traffic to compare with)."""
EDGES = (*names.LATENCY_BUCKETS, math.inf)
CLASSES = ("legit", "fraud")


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class Behaviour:
    """How a simulated version answers: its error share, latency and output classes."""

    errors: float = 0.01
    median_s: float = 0.040
    """Median of the body of the latency distribution (lognormal, sigma 0.25)."""
    tail: float = 0.015
    """Share of requests from the slow component (lognormal, median 200 ms, sigma 0.25)."""
    fraud: float = 0.03
    """Share of outputs of class fraud."""

    def bucket_probabilities(self) -> np.ndarray:
        """P(latency in each bucket), bucket edges as the real histograms' (``le``)."""
        norm = statistics.NormalDist()

        def cdf(x: float, median: float) -> float:
            return 1.0 if math.isinf(x) else norm.cdf(math.log(x / median) / 0.25)

        cum = np.array(
            [(1 - self.tail) * cdf(le, self.median_s) + self.tail * cdf(le, 0.200) for le in EDGES]
        )
        p = np.diff(np.concatenate([[0.0], cum]))
        p = np.clip(p, 0, None)
        return np.asarray(p / p.sum())


STABLE = Behaviour()
SCENARIOS: dict[str, Behaviour] = {
    "identical, 1% errors": STABLE,
    "2% errors (1% -> 2%)": Behaviour(errors=0.02),
    "p50 +20%, same p99": Behaviour(median_s=0.048),
    "heavier tail only (1.5% -> 4% slow)": Behaviour(tail=0.04),
    "output shift (fraud 3% -> 9%)": Behaviour(fraud=0.09),
}


@dataclass
class Counters:
    """Cumulative counters of one version, as its metrics would hold them."""

    ok: float = 0.0
    errors: float = 0.0
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(EDGES)))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASSES)))

    def copy(self) -> Counters:
        return Counters(self.ok, self.errors, self.buckets.copy(), self.classes.copy())


class SimSource:
    """A metric source over the simulated counters, snapshotted at every pass."""

    def __init__(self) -> None:
        self.snapshots: dict[str, dict[float, Counters]] = {"v1": {0.0: Counters()}}
        self.snapshots["v2"] = {0.0: Counters()}

    def record(self, t: float, version: str, counters: Counters) -> None:
        self.snapshots[version][t] = counters.copy()

    def _delta(self, query: MetricQuery, at: datetime | None) -> Counters:
        assert at is not None
        end = (at - T0).total_seconds()
        start = end - query.window_seconds
        snaps = self.snapshots[query.version]
        new = snaps[max(t for t in snaps if t <= end)]
        old_ts = [t for t in snaps if t <= start]
        old = snaps[max(old_ts)] if old_ts else Counters()
        return Counters(
            new.ok - old.ok,
            new.errors - old.errors,
            new.buckets - old.buckets,
            new.classes - old.classes,
        )

    def measure(self, query: MetricQuery, at: datetime | None = None) -> float:
        d = self._delta(query, at)
        total = d.ok + d.errors
        if query.kind == "count":
            return total
        if query.kind == "failed":
            return d.errors
        if query.builtin is Builtin.latencyP99:
            cum = np.cumsum(d.buckets)
            value = histogram_quantile(
                query.quantile or DEFAULT_QUANTILE, zip(EDGES, cum.tolist(), strict=True)
            )
            if value is None:
                raise NoDataError("no requests")
            return value
        if total <= 0:
            raise NoDataError("no requests")
        share = d.errors / total
        return share if query.builtin is Builtin.errorRate else 1.0 - share

    def measure_vector(self, query: MetricQuery, at: datetime | None = None) -> dict[str, float]:
        d = self._delta(query, at)
        if query.kind == "buckets":
            cum = np.cumsum(d.buckets)
            return {
                ("+Inf" if math.isinf(le) else f"{le:g}"): float(c)
                for le, c in zip(EDGES, cum, strict=True)
            }
        return {f"{c}/out": float(v) for c, v in zip(CLASSES, d.classes, strict=True)}


# --------------------------------------------------------------------------- gate sets

COMPARE_GATES: dict[str, dict[str, Any]] = {
    "errors": {"builtin": "errorRate", "compare": {"margin": 0.005}},
    "p99-ratio": {"builtin": "latencyP99", "compare": {"margin": 0.2}},
    "latency-rank": {"builtin": "latencyDistribution", "compare": {"margin": 0.05}},
    "outputs": {"builtin": "outputDistribution", "compare": {"margin": 0.02}},
}
THRESHOLD_GATES: dict[str, dict[str, Any]] = {
    # manifests/samples/canary.yaml: the thresholds and limits users copy
    "success-rate": {"builtin": "successRate", "min": 0.99},
    "p99-latency": {"builtin": "latencyP99", "max": 0.25},
}
THRESHOLD_ANALYSIS = {"failureLimit": 1, "minRequests": 50}


def make_spec(gates: dict[str, dict[str, Any]], threshold: bool) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v2", "uri": "file:///v2.onnx"},
            "strategy": {"canary": {"steps": [{"setWeight": w} for w in WEIGHTS]}},
            "analysis": {
                "interval": f"{INTERVAL_S}s",
                **(THRESHOLD_ANALYSIS if threshold else {}),
                "metrics": [{"name": n, **g} for n, g in gates.items()],
            },
        }
    )


# --------------------------------------------------------------------------- one rollout


@dataclass(frozen=True)
class Outcome:
    result: str
    """rolled back, promoted, paused (for a person: inconclusiveLimit), or held (still
    undecided after the last interval simulated)"""
    gate: str
    """The gate that rolled it back (or '')."""
    candidate_requests: float
    intervals: int


def rollout(
    spec: ModelDeploymentSpec,
    candidate: Behaviour,
    seed: int,
    rate: float,
    max_intervals: int,
) -> Outcome:
    rng = np.random.default_rng(seed)
    v1 = VersionRef(version="v1", uri="file:///v1.onnx")
    status = ModelDeploymentStatus(phase=Phase.Healthy, stable=v1, target=v1)
    ready = {v: VersionObservation(ready=True) for v in ("v1", "v2")}
    status = decide(spec, status, Observations(versions=ready), T0).status
    source = SimSource()
    counters = {"v1": Counters(), "v2": Counters()}
    behaviours = {"v1": STABLE, "v2": candidate}
    probs = {v: b.bucket_probabilities() for v, b in behaviours.items()}
    served_c = 0.0
    for k in range(1, max_intervals + 1):
        t = float(k * INTERVAL_S)
        total = rng.poisson(rate * INTERVAL_S) if rate > 0 else 0
        n_c = rng.binomial(total, status.weights.get("v2", 0) / 100) if total else 0
        for version, n in (("v1", total - n_c), ("v2", n_c)):
            b, c = behaviours[version], counters[version]
            errors = rng.binomial(n, b.errors)
            c.errors += errors
            c.ok += n - errors
            c.buckets += rng.multinomial(n, probs[version])
            fraud = rng.binomial(n - errors, b.fraud)
            c.classes += np.array([n - errors - fraud, fraud])
            source.record(t, version, c)
        served_c += n_c
        now = T0 + timedelta(seconds=t)
        # The engine keeps the last measurements in status for people and never reads
        # them back; dropping them saves the deep copy of 20 comparisons per pass.
        status.measurements = []
        requests = plan_measurements(spec, status, now)
        taken = [measure(source, r, "m", None, now) for r in requests if r.purpose == "analysis"]
        decision = decide(spec, status, Observations(versions=ready, measurements=taken), now)
        status = decision.status
        if status.phase is Phase.RolledBack:
            failed = [m.metric for m in taken if m.verdict == "Failed"]
            return Outcome("rolled back", failed[0] if failed else "?", served_c, k)
        if status.stable is not None and status.stable.version == "v2":
            return Outcome("promoted", "", served_c, k)
        if status.phase is Phase.Paused:
            return Outcome("paused", "", served_c, k)
    return Outcome("held", "", served_c, max_intervals)


def _run(args: tuple[str, dict[str, dict[str, Any]], bool, str, int, float, int]) -> Outcome:
    _, gates, threshold, scenario, seed, rate, max_intervals = args
    return rollout(make_spec(gates, threshold), SCENARIOS[scenario], seed, rate, max_intervals)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Row:
    scenario: str
    gates: str
    runs: int
    outcomes: Counter[str]
    by_gate: Counter[str]
    median_requests: float | None
    median_minutes: float | None


def run_cell(
    pool: Any,
    scenario: str,
    label: str,
    gates: dict[str, dict[str, Any]],
    threshold: bool,
    runs: int,
    rate: float,
    max_intervals: int,
    seed: int,
) -> Row:
    jobs = [(label, gates, threshold, scenario, seed + i, rate, max_intervals) for i in range(runs)]
    outs: list[Outcome] = pool.map(_run, jobs, chunksize=max(1, runs // 16))
    outcomes = Counter(o.result for o in outs)
    by_gate = Counter(o.gate for o in outs if o.result == "rolled back")
    back = [o for o in outs if o.result == "rolled back"]
    med = statistics.median(o.candidate_requests for o in back) if back else None
    minutes = statistics.median(o.intervals * INTERVAL_S / 60 for o in back) if back else None
    return Row(scenario, label, runs, outcomes, by_gate, med, minutes)


def print_row(row: Row, intervals: int) -> None:
    def pct(n: int) -> str:
        return f"{100 * n / row.runs:.1f}%"

    o = row.outcomes
    gates = ", ".join(f"{g} {n}" for g, n in row.by_gate.most_common()) or "-"
    med = f"{row.median_requests:,.0f}" if row.median_requests is not None else "-"
    mins = f"{row.median_minutes:.1f}" if row.median_minutes is not None else "-"
    print(
        f"| {row.scenario} | {row.gates} | {row.runs} | {pct(o['rolled back'])} | "
        f"{pct(o['promoted'])} | {pct(o['held'])} ({intervals}) | {pct(o['paused'])} | {med} | "
        f"{mins} | {gates} |",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gates_sim", description=__doc__)
    parser.add_argument("--runs", type=int, default=1000, help="rollouts per error-rate cell")
    parser.add_argument("--runs-small", type=int, default=200, help="rollouts per other cell")
    parser.add_argument("--max-intervals", type=int, default=240, help="intervals per rollout")
    parser.add_argument("--seed", type=int, default=20300101)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a few rollouts per cell")
    args = parser.parse_args(argv)
    runs, small = (args.runs, args.runs_small) if not args.quick else (20, 10)
    longest = args.max_intervals
    started = time.monotonic()
    one = {"errors": COMPARE_GATES["errors"]}
    sample = "threshold: sample's two"
    # (scenario shown, scenario simulated, gate label, gates, threshold?, runs, rate, intervals)
    cells: list[tuple[str, str, str, dict[str, dict[str, Any]], bool, int, float, int]] = [
        ("identical, 1% errors", "identical, 1% errors", "compare: errors", one, False, runs,
         RATE, longest),
        ("identical, 1% errors", "identical, 1% errors", sample, THRESHOLD_GATES, True, small,
         RATE, longest),
        ("zero traffic", "identical, 1% errors", "compare: errors", one, False, small, 0.0, 60),
        ("2% errors (1% -> 2%)", "2% errors (1% -> 2%)", "compare: errors", one, False, runs,
         RATE, longest),
        ("2% errors (1% -> 2%)", "2% errors (1% -> 2%)", sample, THRESHOLD_GATES, True, small,
         RATE, longest),
    ]  # fmt: skip
    for scenario in list(SCENARIOS)[2:]:
        for name, gate in COMPARE_GATES.items():
            if name == "errors":
                continue
            # The p99 ratio needs ~10^5 requests to pass identical tails within 20%: where
            # it holds, fewer and shorter rollouts say the same in a fraction of the time.
            slow = name == "p99-ratio" and not scenario.startswith("heavier")
            n, most = (max(small // 2, 1), longest // 2) if slow else (small, longest)
            cells.append(
                (scenario, scenario, f"compare: {name}", {name: gate}, False, n, RATE, most)
            )
        cells.append((scenario, scenario, sample, THRESHOLD_GATES, True, small, RATE, longest))
        p99 = {"p99-latency": THRESHOLD_GATES["p99-latency"]}
        cells.append(
            (scenario, scenario, "threshold: p99-latency", p99, True, small, RATE, longest)
        )
    print(
        f"{len(cells)} cells; canary {'/'.join(map(str, WEIGHTS))}%, {RATE:g} req/s, "
        f"interval {INTERVAL_S}s, seed {args.seed}\n"
    )
    print(
        "| scenario | gates | runs | rolled back | promoted | held (intervals) | paused | "
        "median candidate requests to roll back | median minutes to roll back | rolled back by |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with Pool(args.workers) as pool:
        for i, (shown, simulated, label, gates, threshold, n, rate, most) in enumerate(cells):
            row = run_cell(
                pool, simulated, label, gates, threshold, n, rate, most, args.seed + 100_000 * i
            )
            print_row(Row(shown, *list(row.__dict__.values())[1:]), most)
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
