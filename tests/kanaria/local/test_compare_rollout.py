"""Comparative gates end to end: ``kanaria up`` under steady load, with both sources.

The threshold a user would write (``successRate >= 0.9``) cannot see a candidate
that fails 3% of its requests while the stable fails none: 3% is well inside it. A
compare gate on the same traffic can (issue 12): it counts both versions since the
step began and rolls back once the confidence sequence shows the candidate's 5xx
share above the stable's by more than the margin. The same gate promotes a
candidate that is the stable's model under a new version name, once the counts
show it is no worse by more than the margin. Both tests run twice: with a real
Prometheus (``kanaria up --prometheus``: the PromQL compare templates) and with the
embedded source (``--prometheus off``: the scraper's snapshots since the step began).

Sizes, chosen so the test needs about a minute of traffic per rollout on two shared
cores (computed with :func:`kanaria.analysis.compare.judge_failing_share` on the
expected counts; the canary has one step, so 2 windows share 1 - confidence):
margin 0.01 at confidence 0.95 fails a 3% candidate against a 0% stable after about
900 candidate requests and passes an identical one after about 1,100, i.e. 45 and
55 s at the candidate's half of 40 requests per second (measured: promoted after
~1,150, rolled back after 800 to 1,800, the injected 3% showing as 2.1-3.3% at the
router; each source's pair of tests takes 2-3 minutes). Every wait is bounded by the
traffic the test needs, not by a clock. The threshold gate reads windows of 5 s
(about 100 candidate requests): the chance that 3% errors exceed its 10% in one
window is about 1e-4, so it stays Successful for the whole rollout.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kanaria.local.traffic import TrafficGenerator
from tests.kanaria.local.harness import (
    NAME,
    WIDTH,
    Up,
    build_models,
    canary,
    md,
    rolled_back,
    settled_on,
    stable,
)
from tests.support.procs import kanaria, require_binary

pytestmark = [pytest.mark.slow]

THRESHOLD = "success-rate"
COMPARE = "errors-vs-stable"
GATES: list[dict[str, Any]] = [
    {"name": THRESHOLD, "builtin": "successRate", "min": 0.9},
    {
        "name": COMPARE,
        "builtin": "errorRate",
        "compare": {"against": "stable", "margin": 0.01, "confidence": 0.95},
    },
]
ANALYSIS: dict[str, Any] = {
    "interval": "5s",
    "failureLimit": 0,
    # inconclusiveLimit stays at its default (3): the ~20 Inconclusive rounds before a
    # verdict are the compare gate collecting its planned sample, which do not count.
}
STEPS = canary({"setWeight": 50})
RATE = 40.0
"""Requests per second from the steady client (the candidate gets half)."""
DECIDE_S = 400
"""Upper bound for one rollout's verdict: ~7x the traffic the sizes above need."""


class Env:
    """One ``kanaria up`` (model servers, router, Prometheus) and its steady client."""

    def __init__(self, up: Up, models: dict[str, Path], traffic: TrafficGenerator) -> None:
        self.up = up
        self.models = models
        self.traffic = traffic

    def rollout(self, version: str, server_args: list[str] | None = None) -> None:
        """Apply the stable's model file under a new version name."""
        document = md(version, self.models["v1"], STEPS, server_args, metrics=GATES, **ANALYSIS)
        self.up.apply(document)


@pytest.fixture(
    scope="module",
    params=[pytest.param("prometheus", marks=pytest.mark.prometheus), "embedded"],
)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if request.param == "prometheus":
        binary = os.environ.get("KANARIA_TEST_PROMETHEUS") or require_binary(
            "prometheus", "the comparative gates' cumulative counts come from a real Prometheus"
        )
    else:
        binary = "off"
    workdir = tmp_path_factory.mktemp(f"compare-{request.param}")
    models = build_models(workdir / "models")
    up = Up(workdir, binary)
    traffic = TrafficGenerator(up.url, NAME, WIDTH, rate=RATE, workers=8)
    try:
        up.start(md("v1", models["v1"], STEPS, metrics=GATES, **ANALYSIS))
        traffic.start()
        yield Env(up, models, traffic)
    finally:
        traffic.stop()
        up.stop()


def _candidate_measurements(env: Env, version: str, metric: str) -> list[dict[str, Any]]:
    """Every measurement of ``metric`` on ``version`` the engine recorded in its history
    (a compare gate's with its evidence under ``comparison``). Version names are unique
    per rollout; the pass that promotes already names the candidate as stable."""
    return [
        m
        for p in env.up.history()
        for m in p.measurements
        if m.get("version") == version and m.get("metric") == metric
    ]


def _status_text(env: Env) -> str:
    result = subprocess.run(
        kanaria("status", NAME, "--state-dir", str(env.up.root)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_identical_candidate_promotes_on_the_comparison(env: Env) -> None:
    before = env.traffic.stats.not_injected_failures()
    env.rollout("v1-same")
    status = env.up.wait("v1-same promoted", settled_on("v1-same"), DECIDE_S)
    assert status["weights"] == {"v1-same": 100}
    compared = _candidate_measurements(env, "v1-same", COMPARE)
    verdicts = [m["verdict"] for m in compared]
    # Held while the counts could not tell (never promoted on too little data), then
    # shown no worse: the last round before promotion was the comparison's Successful.
    assert verdicts[-1] == "Successful", verdicts
    assert "Failed" not in verdicts, verdicts
    assert "Inconclusive" in verdicts, verdicts
    last = compared[-1]["comparison"]
    assert last["upper"] <= last["limit"] == 0.01, last
    assert last["candidate"]["requests"] > 0, last
    assert last["stable"]["requests"] > 0, last
    assert env.traffic.stats.not_injected_failures() == before, dict(env.traffic.stats.errors)


def test_subtly_worse_candidate_is_rolled_back_by_the_comparison_alone(env: Env) -> None:
    current = stable(env.up.status())
    assert current is not None
    before = env.traffic.stats.not_injected_failures()
    env.rollout("v1-flaky", ["--chaos-error-rate", "0.03"])
    status = env.up.wait("v1-flaky rolled back", rolled_back("v1-flaky"), DECIDE_S)
    assert stable(status) == current
    assert status["weights"] == {current: 100}
    # The compare gate is the one named, and the only one that ever failed.
    assert f"gate {COMPARE} failed" in status["message"], status["message"]
    assert status["gates"][COMPARE]["failed"] >= 1, status["gates"]
    assert status["gates"].get(THRESHOLD, {}).get("failed", 0) == 0, status["gates"]
    threshold = _candidate_measurements(env, "v1-flaky", THRESHOLD)
    assert threshold, "the threshold gate was measured"
    # The threshold gate saw the injected errors and passed them every round.
    assert all(m["verdict"] in ("Successful", "Inconclusive") for m in threshold), threshold
    seen = [m["value"] for m in threshold if m.get("value") is not None]
    assert seen, threshold
    assert all(v >= 0.9 for v in seen), seen
    assert min(seen) < 1.0, seen
    compared = _candidate_measurements(env, "v1-flaky", COMPARE)
    assert compared[-1]["verdict"] == "Failed", compared[-1]
    evidence = compared[-1]["comparison"]
    assert evidence["lower"] > evidence["limit"], evidence
    assert evidence["candidate"]["events"] > 0, evidence
    # The injected failures are the candidate's doing; nothing else failed.
    assert env.traffic.stats.not_injected_failures() == before, dict(env.traffic.stats.errors)
    # `kanaria status` says why, in the evidence line of the compare gate.
    text = _status_text(env)
    assert COMPARE in text, text
