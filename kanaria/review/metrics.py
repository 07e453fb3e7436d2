"""The review path's metrics: how full each sink's queue is and what became of the cases.

Names are an interface (alerts: "a review queue is dropping"; dashboards), so
they are constants here with their labels and meaning:

- ``kanaria_review_queue_depth{model, sink}``: cases waiting in a sink's buffer
  (read when scraped, so an ``offer`` pays nothing for it). The batch a sink is
  delivering or retrying is not in it.
- ``kanaria_review_cases_total{model, version, sink, outcome}``: cases offered to
  a sink, by outcome: ``sent`` (the sink took them), ``failed`` (refused, or still
  failing after the last attempt), ``dropped`` (the buffer was full, or still held
  them when the sender was closed).
- ``kanaria_review_delivery_retries_total{model, sink}``: deliveries attempted
  again after a failure that may pass (a down or overloaded receiver).
- ``kanaria_review_labels_total{model, source, result}``: reviewers' labels read
  back from a labelling tool, by result: ``accepted`` (the feedback API matched
  the prediction), ``unknown`` (it no longer remembers the request id),
  ``failed`` (the feedback API could not be reached or refused the label),
  ``invalid`` (an annotation that names no class the model has).

Each :class:`ReviewMetrics` owns its series on the registry it is given (the
default one in a component, a private one in ``kanaria up`` and in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

REVIEW_QUEUE_DEPTH: Final = "kanaria_review_queue_depth"
REVIEW_CASES: Final = "kanaria_review_cases_total"
REVIEW_RETRIES: Final = "kanaria_review_delivery_retries_total"
REVIEW_LABELS: Final = "kanaria_review_labels_total"

CaseOutcome = Literal["sent", "failed", "dropped"]
LabelResult = Literal["accepted", "unknown", "failed", "invalid"]


class ReviewMetrics:
    """The review path's series on one registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.queue_depth = Gauge(
            REVIEW_QUEUE_DEPTH.removesuffix("_total"),
            "Review cases waiting in a sink's buffer",
            ["model", "sink"],
            registry=registry,
        )
        self.cases = Counter(
            REVIEW_CASES.removesuffix("_total"),
            "Review cases by sink and outcome (sent, failed, dropped)",
            ["model", "version", "sink", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            REVIEW_RETRIES.removesuffix("_total"),
            "Review deliveries attempted again after a failure that may pass",
            ["model", "sink"],
            registry=registry,
        )
        self.labels = Counter(
            REVIEW_LABELS.removesuffix("_total"),
            "Reviewers' labels read back from a labelling tool, by result",
            ["model", "source", "result"],
            registry=registry,
        )

    def watch_depth(self, model: str, sink: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the queue depth of (model, sink) whenever it is scraped."""
        self.queue_depth.labels(model, sink).set_function(depth)

    def forget_depth(self, model: str, sink: str) -> None:
        """Remove the (model, sink) depth series: the sender is gone, so is its queue."""
        try:
            self.queue_depth.remove(model, sink)
        except KeyError:
            return
