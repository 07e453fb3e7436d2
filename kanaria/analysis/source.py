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
from typing import Literal, Protocol, runtime_checkable

from kanaria.api import Builtin


@dataclass(frozen=True)
class MetricQuery:
    """One number to measure."""

    promql: str
    """The resolved PromQL."""
    kind: Literal["value", "count", "mirror", "failed", "buckets", "classes"]
    """value: the gate's value; count: how many observations it rests on (minRequests);
    mirror: how many copies mirrored to the version ended with ``outcome`` (why a
    shadow has no data). A compare gate's counts since its window began: count (all
    observations) and failed (5xx, or incorrect labels) as numbers; buckets (latency
    histogram, by ``le``) and classes (output classes, by ``class/output``) as vectors
    through :class:`VectorSource`."""
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
    outcome: Literal["sent", "dropped", "failed"] | None = None
    """Mirror outcome counted by a ``mirror`` query."""
    band: tuple[float, float] | None = None
    """reviewerAgreement: the confidence band [low, high) whose review cases count."""

    @property
    def scraped_from(self) -> str:
        """Which process exports the series this query reads: ``router``, or ``server``
        (the version's model server)."""
        if self.kind == "mirror" or self.builtin is Builtin.shadowAgreement:
            return "router"
        if self.builtin in (
            Builtin.inputDrift,
            Builtin.accuracy,
            Builtin.reviewerAgreement,
            Builtin.automationRate,
        ):
            return "server"
        return self.traffic if self.builtin is not None else "router"


class MetricSource(Protocol):
    """Anything that can answer a :class:`MetricQuery`."""

    def measure(self, query: MetricQuery, at: datetime | None = None) -> float:
        """The query's value at ``at`` (None: now).

        Raises ``NoDataError`` when there is none; ``AmbiguousResultError``,
        ``QueryFailedError``, ``SourceUnavailableError`` or ``UnsupportedQueryError``
        when there is no usable answer."""
        ...


@runtime_checkable
class ExplainsNoData(Protocol):
    """A source that can say why a query found no data (optional beside :class:`MetricSource`).

    Asked only when a gate has no observations at all, so that a broken scrape
    ("Prometheus scrapes nothing", "the router's target is down") reads as such
    in the measurement's reason instead of as a quiet "no requests".
    """

    def why_no_data(self, query: MetricQuery) -> str | None:
        """What on the source's side explains that ``query`` has no data; None if nothing
        does (then there really was no traffic). Never raises."""
        ...


@runtime_checkable
class VectorSource(Protocol):
    """A source that can also answer a query with several labelled numbers (optional
    beside :class:`MetricSource`): the per-bucket latency counts and per-class output
    counts of compare gates (``kind`` buckets or classes)."""

    def measure_vector(self, query: MetricQuery, at: datetime | None = None) -> dict[str, float]:
        """The query's values keyed by the grouping labels' values in the order of their
        names (``le``; ``class/output``), empty when there are none. Raises like
        :meth:`MetricSource.measure` otherwise."""
        ...
