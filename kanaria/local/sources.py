"""The local runtime's metric sources, behind :class:`kanaria.analysis.MetricSource`.

With the Prometheus binary, ``kanaria up`` runs a real Prometheus and queries it
with the built-in PromQL templates (:class:`kanaria.analysis.PrometheusSource`);
without it, the embedded scraper computes the same built-ins
(:class:`kanaria.local.embedded.EmbeddedSource`). Either way the verdicts come
from :func:`kanaria.analysis.measure`, exactly as in the operator.
"""

from __future__ import annotations

from datetime import datetime

from kanaria.analysis import MetricSource, PrometheusSource
from kanaria.analysis import measure as measure_request
from kanaria.api import Measurement
from kanaria.rollout import MeasurementRequest

__all__ = ["MetricSource", "PrometheusSource", "measure"]


def measure(
    source: MetricSource, request: MeasurementRequest, model: str, now: datetime
) -> Measurement:
    """One measurement with its verdict (local runs have no namespace label)."""
    return measure_request(source, request, model=model, namespace=None, now=now)
