"""The metric-source protocol: how gates get numbers.

A source answers one :class:`MetricQuery` with one float, or raises a
:class:`~kanaria.analysis.errors.MetricError` subclass. The query carries both
the resolved PromQL (for Prometheus) and its structured meaning (builtin, model,
version, window, quantile), so a source without a PromQL engine (the local
runtime's embedded scraper) can compute built-ins itself and raise
:class:`~kanaria.analysis.errors.UnsupportedQueryError` for custom PromQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from kanaria.api import Builtin


@dataclass(frozen=True)
class MetricQuery:
    """One number to measure."""

    promql: str
    """The resolved PromQL."""
    kind: Literal["value", "count"]
    """value: the gate's value; count: how many observations it rests on (minRequests)."""
    builtin: Builtin | None
    """The built-in gate, or None for a custom query."""
    model: str
    version: str
    namespace: str | None
    window_seconds: float
    quantile: float | None = None
    """Latency quantile (builtin latencyP99 only)."""
    traffic: Literal["router", "server"] = "router"
    """Count requests at the router (versions answering clients) or at the model server
    (versions that only get mirrored or preview copies)."""


class MetricSource(Protocol):
    """Anything that can answer a :class:`MetricQuery`."""

    def measure(self, query: MetricQuery, at: datetime | None = None) -> float:
        """The query's value at ``at`` (None: now).

        Raises ``NoDataError`` when there is none; ``AmbiguousResultError``,
        ``QueryFailedError``, ``SourceUnavailableError`` or ``UnsupportedQueryError``
        when there is no usable answer."""
        ...
