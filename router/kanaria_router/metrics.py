"""The router's Prometheus series, with label children cached for the hot path.

Names and labels come from ``kanaria.metric_names``: gates, alerts and
dashboards read them. Each app gets its own registry, so several routers can
live in one process (tests) without clashing.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from kanaria import metric_names as mn
from kanaria_router.table import RouteTable, weights

PRECREATED_CODES = (200, 500, 502, 503, 504)
"""Status codes whose request counters exist at 0 as soon as a version is routed.

Prometheus' ``increase()``/``rate()`` cannot count a series' first sample, so a
counter born with a canary's first 500 would hide that error from the gates for
a whole window; created at zero, the first error is a visible step."""

UNROUTED = "none"
"""``version`` label of requests refused before a version was chosen."""


class RouterMetrics:
    """Counters, histogram and gauges of one router."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # CPU and memory of the router process: the dashboard's software row.
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            mn.ROUTER_REQUESTS,
            "Client requests answered, by model, version and HTTP status code.",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            mn.ROUTER_LATENCY,
            "Client-observed latency through the router, seconds.",
            ["model", "version"],
            buckets=mn.LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.weight = Gauge(
            mn.ROUTER_WEIGHT,
            "Weight (0-100) currently configured for a version.",
            ["model", "version"],
            registry=self.registry,
        )
        self.mirror = Counter(
            mn.ROUTER_MIRROR,
            "Mirrored copies by outcome: sent (answered), dropped (queue full), failed.",
            ["model", "version", "outcome"],
            registry=self.registry,
        )
        self.comparisons = Counter(
            mn.SHADOW_COMPARISONS,
            "Shadow answers compared with the primary's; version is the shadow.",
            ["model", "version", "baseline", "result"],
            registry=self.registry,
        )
        self.reloads = Counter(
            mn.ROUTER_CONFIG_RELOADS,
            "Route reloads by result (applied or rejected).",
            ["result"],
            registry=self.registry,
        )
        self.revision = Gauge(
            mn.ROUTER_ROUTES_REVISION,
            "The revision of the routes document the router runs (value always 1).",
            ["revision"],
            registry=self.registry,
        )
        self.threshold = Gauge(
            mn.AUTOMATION_THRESHOLD,
            "Confidence threshold applied to a version (1: assist, 0: full).",
            ["model", "version"],
            registry=self.registry,
        )
        self._req: dict[tuple[str, str, int], Counter] = {}
        self._lat: dict[tuple[str, str], Histogram] = {}
        self._weights: set[tuple[str, str]] = set()

    def observe(self, model: str, version: str, code: int, seconds: float) -> None:
        """Count one answered request and its latency (children cached: hot path)."""
        key = (model, version, code)
        counter = self._req.get(key)
        if counter is None:
            counter = self._req[key] = self.requests.labels(model, version, str(code))
        counter.inc()
        hkey = (model, version)
        hist = self._lat.get(hkey)
        if hist is None:
            hist = self._lat[hkey] = self.latency.labels(model, version)
        hist.observe(seconds)

    def set_weights(self, table: RouteTable) -> None:
        """Publish the table's weights; versions no longer routed lose their series."""
        current = {(m, v): w for m, v, w in weights(table)}
        for gone in self._weights - current.keys():
            self.weight.remove(*gone)
        for (model, version), w in current.items():
            self.weight.labels(model, version).set(w)
            if (model, version) not in self._weights:
                for code in PRECREATED_CODES:
                    key = (model, version, code)
                    if key not in self._req:
                        self._req[key] = self.requests.labels(model, version, str(code))
        self._weights = set(current)

    def set_thresholds(self, table: RouteTable) -> None:
        """Publish each version's confidence threshold (versions without a policy: none)."""
        self.threshold.clear()
        for m in table.models.values():
            for v in m.versions.values():
                a = v.automation
                if a is not None:
                    value = 1.0 if a.mode == "assist" else 0.0 if a.mode == "full" else a.threshold
                    self.threshold.labels(m.name, v.name).set(value)

    def set_revision(self, revision: str) -> None:
        """Publish the revision of the routes now applied (one series)."""
        self.revision.clear()
        self.revision.labels(revision).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
