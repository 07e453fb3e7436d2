"""Operator-metrics exporter for the monitoring acceptance test (a stand-in, named as such).

The real operator needs a cluster to act on; the acceptance test only needs its
metrics next to a real data plane. This process sets the operator's own metric
objects (kanaria_operator.metrics, through the same ``publish`` the reconcile
loop calls) to one canary rollout in progress, keeps counting measurements and
decision passes, and serves them on 127.0.0.1 until SIGTERM.

    python -m tests.kanaria.monitoring.operator_metrics_exporter --port 9100 \
        --model fraud --stable v1 --candidate v2 --shadow v3
"""

from __future__ import annotations

import argparse
import signal
import threading
import time

from kanaria_operator import metrics
from prometheus_client import start_http_server

NAMESPACE = "default"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--stable", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--shadow", required=True)
    parser.add_argument("--candidate-weight", type=float, default=30.0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    weights = {
        (args.stable, "stable"): 100.0 - args.candidate_weight,
        (args.candidate, "candidate"): args.candidate_weight,
        (args.shadow, "shadow"): 100.0,
    }
    metrics.publish(NAMESPACE, args.model, "Progressing", weights, 2, time.time())
    metrics.ROLLOUT_TRANSITIONS.labels(NAMESPACE, args.model, "StepAdvanced").inc()
    start_http_server(args.port, addr="127.0.0.1")
    verdicts = ("Successful", "Successful", "Inconclusive")
    passes = 0
    while not stop.wait(0.5):
        started = time.perf_counter()
        verdict = verdicts[passes % len(verdicts)]
        metrics.ANALYSIS_MEASUREMENTS.labels(NAMESPACE, args.model, "success-rate", verdict).inc()
        metrics.DECISION_LATENCY.observe(time.perf_counter() - started)
        passes += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
