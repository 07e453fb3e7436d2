"""Operator-metrics exporter for the monitoring acceptance test (a stand-in, named as such).

The real operator needs a cluster to act on; the acceptance test only needs its
metrics next to a real data plane. This process feeds the operator's own metric
objects (``kanaria_operator.metrics.LOOP``, the shared
:class:`kanaria.loop_metrics.LoopMetrics`, through the same ``record_pass`` the
reconcile loop calls) one canary rollout in progress, keeps recording analysis
passes (a threshold gate's, and a compare gate's with its evidence), and serves
them on 127.0.0.1 until SIGTERM.

    python -m tests.kanaria.monitoring.operator_metrics_exporter --port 9100 \
        --model fraud --stable v1 --candidate v2 --shadow v3
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from datetime import UTC, datetime

from kanaria_operator.metrics import LOOP

from kanaria.api import Comparison, Measurement, ModelDeploymentStatus, Verdict
from kanaria.rollout import Decision, Event, Observations

NAMESPACE = "default"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--stable", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--shadow", required=True)
    parser.add_argument("--candidate-weight", type=int, default=30)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    status = ModelDeploymentStatus.model_validate(
        {
            "phase": "Progressing",
            "currentStep": 2,
            "candidate": {"version": args.candidate, "uri": "stand-in"},
            "versions": [
                {"version": args.stable, "uri": "stand-in", "role": "stable", "replicas": 1},
                {"version": args.candidate, "uri": "stand-in", "role": "candidate", "replicas": 1},
            ],
            "weights": {
                args.stable: 100 - args.candidate_weight,
                args.candidate: args.candidate_weight,
            },
            "mirror": {"version": args.shadow, "percent": 100.0},
        }
    )
    advanced = Event(type="Normal", reason="StepAdvanced", message="stand-in")
    LOOP.record_pass(
        NAMESPACE,
        args.model,
        Observations(),
        Decision(status=status, events=[advanced]),
        time.time(),
    )
    LOOP.serve(args.port)
    verdicts = (Verdict.Successful, Verdict.Successful, Verdict.Inconclusive)
    passes = 0
    while not stop.wait(0.5):
        started = time.perf_counter()
        verdict = verdicts[passes % len(verdicts)]
        measurement = Measurement(
            metric="success-rate", version=args.candidate, verdict=verdict, time=datetime.now(UTC)
        )
        evidence = Comparison.model_validate(
            {
                "test": "difference",
                "candidate": {"version": args.candidate, "requests": 100 + passes, "events": 1},
                "stable": {"version": args.stable, "requests": 300 + passes, "events": 3},
                "estimate": 0.0,
                "lower": -0.02,
                "upper": 0.02,
                "limit": 0.01,
                "confidence": 0.99,
            }
        )
        compared = Measurement(
            metric="errors-vs-stable",
            version=args.candidate,
            verdict=Verdict.Inconclusive,
            time=datetime.now(UTC),
            comparison=evidence,
        )
        observations = Observations(measurements=[measurement, compared])
        LOOP.record_pass(NAMESPACE, args.model, observations, Decision(status=status), time.time())
        LOOP.observe_latency(time.perf_counter() - started)
        passes += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
