"""Why a measurement produced no value: each error maps to one verdict.

Metric sources raise these instead of returning sentinels, so the gate logic
in :mod:`kanaria.analysis.measure` turns every failure into a verdict with a
reason, and nothing a metric backend does can crash the control loop.
"""

from __future__ import annotations

from kanaria.api import Verdict


class MetricError(Exception):
    """Base: the measurement has no value. ``verdict`` says how the engine counts it."""

    verdict = Verdict.Error

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoDataError(MetricError):
    """The query matched no series, or its value is NaN (e.g. no requests in the window):
    not evidence either way, so Inconclusive."""

    verdict = Verdict.Inconclusive


class AmbiguousResultError(MetricError):
    """The query returned several series where one value is needed: a query bug, Error."""


class QueryFailedError(MetricError):
    """The backend rejected the query (syntax, unknown function, wrong result type)."""


class SourceUnavailableError(MetricError):
    """The backend could not be reached or answered with a server error."""


class UnsupportedQueryError(MetricError):
    """The source cannot answer this kind of query (e.g. custom PromQL without Prometheus)."""
