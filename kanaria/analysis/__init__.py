"""Metric gates: built-in PromQL templates, verdicts, and metric sources.

The engine (:mod:`kanaria.rollout`) says what to measure; this package measures
it::

    from kanaria.analysis import PrometheusSource, measure
    with PrometheusSource("http://127.0.0.1:9090") as source:
        m = measure(source, request, model="fraud", namespace=None, now=now)
"""

from kanaria.analysis.errors import (
    AmbiguousResultError,
    MetricError,
    NoDataError,
    QueryFailedError,
    SourceUnavailableError,
    UnsupportedQueryError,
)
from kanaria.analysis.measure import measure, queries
from kanaria.analysis.prometheus import PrometheusSource
from kanaria.analysis.source import MetricQuery, MetricSource
from kanaria.analysis.templates import (
    DEFAULT_QUANTILE,
    builtin_query,
    count_query,
    gate_query,
    matcher,
    render_custom,
)
from kanaria.analysis.verdict import enough_requests, judge

__all__ = [
    "DEFAULT_QUANTILE",
    "AmbiguousResultError",
    "MetricError",
    "MetricQuery",
    "MetricSource",
    "NoDataError",
    "PrometheusSource",
    "QueryFailedError",
    "SourceUnavailableError",
    "UnsupportedQueryError",
    "builtin_query",
    "count_query",
    "enough_requests",
    "gate_query",
    "judge",
    "matcher",
    "measure",
    "queries",
    "render_custom",
]
