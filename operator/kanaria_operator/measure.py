"""Measurements for the engine, taken from Prometheus through kanaria.analysis.

The operator passes the ModelDeployment's namespace, so the built-in gates
match the ``namespace`` label Prometheus puts on pod metrics in a cluster.
"""

from __future__ import annotations

from datetime import datetime

from kanaria_operator.objects import Owner

from kanaria.analysis import PrometheusSource, measure
from kanaria.api import Measurement, Verdict
from kanaria.rollout import MeasurementRequest


class PrometheusMeasure:
    """Callable taking one measurement; without a Prometheus URL every one is an Error,
    so a gated rollout rolls back (after the error limit) instead of promoting blind."""

    def __init__(self, url: str | None, timeout_s: float = 5.0) -> None:
        self.url = url
        self._source = PrometheusSource(url, timeout=timeout_s) if url else None

    def __call__(self, request: MeasurementRequest, owner: Owner, now: datetime) -> Measurement:
        if self._source is None:
            return Measurement(
                metric=request.gate.name,
                version=request.version,
                verdict=Verdict.Error,
                reason="the operator has no Prometheus URL (--prometheus-url or "
                "KANARIA_PROMETHEUS_URL)",
                time=now,
            )
        return measure(self._source, request, owner.name, owner.namespace, now)
