"""The embedded metric source: built-in gates computed from scraped samples.

Used by ``kanaria up`` when no Prometheus binary is available. It implements
:class:`kanaria.analysis.MetricSource`: each built-in query is answered for one
model version over the query's window with the same meaning as the PromQL
templates in :mod:`kanaria.analysis.templates` (success and latency at the router
for a version that answers clients, at its model server when it only gets
mirrored or preview copies (``query.traffic == "server"``); server-side drift,
router-side shadow agreement, feedback accuracy), and each ``count`` query with
the number of observations the value rests on. Verdicts
stay in :func:`kanaria.analysis.measure`; this module only produces numbers.
"""

from __future__ import annotations

from datetime import datetime

from kanaria import metric_names as names
from kanaria.analysis import MetricQuery, NoDataError, UnsupportedQueryError
from kanaria.analysis.templates import DEFAULT_QUANTILE, band_labels
from kanaria.api import Builtin
from kanaria.local.scrape import Scraper


def _ratio(good: float, total: float, what: str) -> float:
    if total <= 0:
        raise NoDataError(f"no {what} in the window")
    return good / total


class EmbeddedSource:
    """Answers built-in gate queries from a :class:`~kanaria.local.scrape.Scraper`."""

    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper

    def _requests(self, q: MetricQuery) -> dict[str, float]:
        """Requests by code where ``q.traffic`` says they are counted: the router's, or
        the model server's infer requests (mirrored copies never reach the router's)."""
        if q.traffic == "server":
            return self.scraper.counter_increase(
                names.SERVER_REQUESTS,
                {"model": q.model, "version": q.version, "endpoint": "infer"},
                q.window_seconds,
                by="code",
            )
        return self.scraper.counter_increase(
            names.ROUTER_REQUESTS,
            {"model": q.model, "version": q.version},
            q.window_seconds,
            by="code",
        )

    def _results(self, metric: str, q: MetricQuery) -> dict[str, float]:
        return self.scraper.counter_increase(
            metric, {"model": q.model, "version": q.version}, q.window_seconds, by="result"
        )

    def why_no_data(self, query: MetricQuery) -> str | None:
        """The scraper's view of a query without data: no targets, or the process the
        query reads failing its scrapes (never raises)."""
        targets = self.scraper.targets()
        if not targets:
            return "the embedded scraper has no targets: nothing is measured"
        wanted = "router" if query.scraped_from == "router" else f"server-{query.version}"
        error = self.scraper.errors().get(wanted)
        if error is not None:
            return f"the embedded scraper cannot read {wanted}'s metrics ({error})"
        return None

    def measure(self, query: MetricQuery, at: datetime | None = None) -> float:
        """The query's current value (``at`` is ignored: the scraper only has recent data)."""
        if query.kind == "mirror":
            counts = self.scraper.counter_increase(
                names.ROUTER_MIRROR,
                {"model": query.model, "version": query.version, "outcome": query.outcome or ""},
                query.window_seconds,
            )
            return sum(counts.values())
        builtin = query.builtin
        if builtin is None:
            raise UnsupportedQueryError(
                "custom `query:` gates need Prometheus: install it (make system-deps) and run "
                "`kanaria up --prometheus auto`"
            )
        if query.kind == "count":
            return self._count(builtin, query)
        if query.kind == "failed":
            return self._failed(builtin, query)
        if query.kind in ("buckets", "classes"):
            raise UnsupportedQueryError(f"{query.kind} is a vector: use measure_vector")
        if builtin in (Builtin.successRate, Builtin.errorRate):
            by_code = self._requests(query)
            total = sum(by_code.values())
            errors = sum(n for code, n in by_code.items() if code.startswith("5"))
            error_share = _ratio(errors, total, "requests")
            return error_share if builtin is Builtin.errorRate else 1.0 - error_share
        if builtin is Builtin.latencyP99:
            value = self.scraper.quantile(
                query.quantile or DEFAULT_QUANTILE,
                names.SERVER_LATENCY if query.traffic == "server" else names.ROUTER_LATENCY,
                {"model": query.model, "version": query.version},
                query.window_seconds,
            )
            if value is None:
                raise NoDataError("no requests in the window")
            return value
        if builtin in (Builtin.reviewerAgreement, Builtin.automationRate):
            hits, seen = self._automation(builtin, query)
            what = "review labels" if builtin is Builtin.reviewerAgreement else "decisions"
            return _ratio(hits, seen, what)
        if builtin is Builtin.inputDrift:
            drift = self.scraper.gauge_max(
                names.INPUT_DRIFT,
                {"model": query.model, "version": query.version},
                query.window_seconds,
            )
            if drift is None:
                raise NoDataError("no drift values (does the version have a reference profile?)")
            return drift
        metric, good, bad = (
            (names.SHADOW_COMPARISONS, "agree", "disagree")
            if builtin is Builtin.shadowAgreement
            else (names.FEEDBACK, "correct", "incorrect")
        )
        results = self._results(metric, query)
        positive = results.get(good, 0.0)
        negative = results.get(bad, 0.0)
        return _ratio(positive, positive + negative, f"{good}/{bad} results")

    def measure_vector(self, query: MetricQuery, at: datetime | None = None) -> dict[str, float]:
        """A compare gate's per-bucket latency counts (keyed by ``le``) or per-class
        output counts (keyed ``class/output``) over the query's window, as the PromQL of
        :func:`kanaria.analysis.templates.compare_queries` groups them."""
        match = {"model": query.model, "version": query.version}
        if query.kind == "buckets":
            name = names.SERVER_LATENCY if query.traffic == "server" else names.ROUTER_LATENCY
            return self.scraper.counter_increase(
                f"{name}_bucket", match, query.window_seconds, by="le"
            )
        if query.kind == "classes":
            return self.scraper.counter_increase(
                names.OUTPUT_CLASSES, match, query.window_seconds, by=("class", "output")
            )
        raise UnsupportedQueryError(f"no vector for a {query.kind} query")

    def _failed(self, builtin: Builtin, query: MetricQuery) -> float:
        """A compare gate's failures: 5xx requests, or incorrect labels for accuracy."""
        if builtin is Builtin.accuracy:
            return self._results(names.FEEDBACK, query).get("incorrect", 0.0)
        return sum(n for code, n in self._requests(query).items() if code.startswith("5"))

    def _automation(self, builtin: Builtin, query: MetricQuery) -> tuple[float, float]:
        """(good, total): agreeing labels and all labels on review cases in the query's
        bands (reviewerAgreement), or automated and all decisions (automationRate)."""
        match = {"model": query.model, "version": query.version}
        if builtin is Builtin.automationRate:
            d = self.scraper.counter_increase(
                names.AUTOMATION_DECISIONS, match, query.window_seconds, by="decision"
            )
            return d.get("automated", 0.0), sum(d.values())
        wanted = set(band_labels(query.band))
        r = self.scraper.counter_increase(
            names.REVIEW_AGREEMENT, match, query.window_seconds, by=("band", "result")
        )
        agree = total = 0.0
        for key, n in r.items():
            band, _, result = key.partition("/")
            if band in wanted:
                total += n
                agree += n if result == "agree" else 0.0
        return agree, total

    def _count(self, builtin: Builtin, query: MetricQuery) -> float:
        if builtin in (Builtin.reviewerAgreement, Builtin.automationRate):
            return self._automation(builtin, query)[1]
        if builtin is Builtin.inputDrift:
            return sum(
                self.scraper.counter_increase(
                    names.SERVER_REQUESTS,
                    {"model": query.model, "version": query.version, "endpoint": "infer"},
                    query.window_seconds,
                ).values()
            )
        if builtin is Builtin.shadowAgreement:
            r = self._results(names.SHADOW_COMPARISONS, query)
            return r.get("agree", 0.0) + r.get("disagree", 0.0)
        if builtin is Builtin.accuracy:
            r = self._results(names.FEEDBACK, query)
            return r.get("correct", 0.0) + r.get("incorrect", 0.0)
        return sum(self._requests(query).values())
