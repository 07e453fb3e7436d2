"""Router series that the gates depend on exist before the first request."""

from __future__ import annotations

from kanaria_router.metrics import PRECREATED_CODES, RouterMetrics
from kanaria_router.table import RouteTable

from kanaria.routes import RoutesConfig

ROUTES = """
models:
  fraud:
    versions:
      v1: {url: "http://127.0.0.1:9001", weight: 90}
      v2: {url: "http://127.0.0.1:9002", weight: 10}
"""


def _lines(metrics: RouterMetrics) -> list[str]:
    return metrics.exposition().decode().splitlines()


def test_error_counters_exist_at_zero_as_soon_as_a_version_is_routed() -> None:
    # increase() cannot see a counter's first sample: a canary's first 500 must
    # be a step from an existing 0, not the birth of a new series.
    metrics = RouterMetrics()
    metrics.set_weights(RouteTable.build(RoutesConfig.from_yaml(ROUTES)))
    lines = _lines(metrics)
    for version in ("v1", "v2"):
        for code in PRECREATED_CODES:
            labels = f'code="{code}",model="fraud",version="{version}"'
            assert f"kanaria_router_requests_total{{{labels}}} 0.0" in lines


def test_precreated_counters_keep_counting_real_requests() -> None:
    metrics = RouterMetrics()
    metrics.set_weights(RouteTable.build(RoutesConfig.from_yaml(ROUTES)))
    metrics.observe("fraud", "v2", 500, 0.01)
    metrics.set_weights(
        RouteTable.build(RoutesConfig.from_yaml(ROUTES))
    )  # a reload keeps the count
    assert 'kanaria_router_requests_total{code="500",model="fraud",version="v2"} 1.0' in _lines(
        metrics
    )
