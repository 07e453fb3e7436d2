"""A metric source over the Prometheus HTTP API (``/api/v1/query``).

Instant queries only: every gate asks for one number. Transport problems,
timeouts and HTTP errors become typed errors with the URL and Prometheus' own
error text, so a gate's reason tells a person what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from kanaria.analysis.errors import (
    AmbiguousResultError,
    NoDataError,
    QueryFailedError,
    SourceUnavailableError,
)
from kanaria.analysis.source import MetricQuery

MAX_SERIES_SHOWN = 3


class PrometheusSource:
    """Answers queries with a Prometheus server at ``url`` (e.g. http://127.0.0.1:9090)."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``headers`` are sent with every query (e.g. {"Authorization": "Bearer ..."})."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._client = httpx.Client(
            timeout=timeout, headers=dict(headers or {}), transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def measure(self, query: MetricQuery, at: datetime | None = None) -> float:
        return self.instant(query.promql, at)

    def measure_vector(self, query: MetricQuery, at: datetime | None = None) -> dict[str, float]:
        """Every series of ``query``, keyed by its labels' values joined with ``/`` in
        the order of the label names (``le`` for buckets, ``class/output`` for classes);
        NaN samples are left out."""
        data = self._query(query.promql, at)
        result = data.get("result")
        if data.get("resultType") != "vector" or not isinstance(result, list):
            raise QueryFailedError("the query returned no instant vector")
        out: dict[str, float] = {}
        for series in result:
            labels = series.get("metric", {}) if isinstance(series, dict) else {}
            value = series.get("value") if isinstance(series, dict) else None
            if not isinstance(value, list) or len(value) != 2:
                raise QueryFailedError(f"malformed sample in Prometheus answer: {series!r}")
            try:
                number = float(value[1])
            except (TypeError, ValueError) as exc:
                raise QueryFailedError(f"non-numeric value {value[1]!r}") from exc
            if math.isnan(number):
                continue
            key = "/".join(str(labels[k]) for k in sorted(labels))
            out[key] = out.get(key, 0.0) + number
        return out

    def instant(self, promql: str, at: datetime | None = None) -> float:
        """The single value of an instant query."""
        return _single_value(self._query(promql, at))

    def _query(self, promql: str, at: datetime | None) -> dict[str, Any]:
        """The ``data`` of an instant query's answer."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        endpoint = f"{self.url}/api/v1/query"
        try:
            response = self._client.get(endpoint, params=params)
        except httpx.TimeoutException as exc:
            raise SourceUnavailableError(
                f"Prometheus at {self.url} did not answer within {self.timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(f"cannot reach Prometheus at {self.url}: {exc}") from exc
        body = _json(response)
        if response.status_code in (400, 422):
            raise QueryFailedError(
                f"Prometheus rejected the query: {body.get('error', response.text)}"
            )
        if response.status_code != 200 or body.get("status") != "success":
            detail = body.get("error") or response.text[:200]
            raise SourceUnavailableError(
                f"Prometheus at {self.url} answered HTTP {response.status_code}: {detail}"
            )
        data = body.get("data", {})
        return data if isinstance(data, dict) else {}

    def targets(self) -> list[ScrapeTarget]:
        """Prometheus' active scrape targets (``/api/v1/targets``) and their health.

        Raises :class:`SourceUnavailableError` when Prometheus cannot say."""
        endpoint = f"{self.url}/api/v1/targets"
        try:
            response = self._client.get(endpoint, params={"state": "active"})
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(f"cannot reach Prometheus at {self.url}: {exc}") from exc
        body = _json(response)
        active = body.get("data", {}).get("activeTargets") if body else None
        if response.status_code != 200 or not isinstance(active, list):
            raise SourceUnavailableError(
                f"Prometheus at {self.url} answered HTTP {response.status_code} for its targets"
            )
        return [ScrapeTarget.from_api(t) for t in active if isinstance(t, dict)]

    def why_no_data(self, query: MetricQuery) -> str | None:
        """Explain a query without data by Prometheus' scrape health (never raises)."""
        try:
            targets = self.targets()
        except SourceUnavailableError as exc:
            return exc.reason
        return scrape_problem(targets, query.scraped_from, query.version, self.url)


@dataclass(frozen=True)
class ScrapeTarget:
    """One of Prometheus' active scrape targets."""

    name: str
    """Its ``component`` label (``kanaria up`` sets one), else ``job`` and ``instance``."""
    labels: dict[str, str]
    health: str
    """up, down or unknown (not scraped yet)."""
    error: str
    """The last scrape's error, empty when it worked."""

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> ScrapeTarget:
        labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
        name = labels.get("component") or " ".join(
            v for v in (labels.get("job"), labels.get("instance")) if v
        )
        return cls(
            name=name or str(raw.get("scrapeUrl", "?")),
            labels=labels,
            health=str(raw.get("health", "unknown")),
            error=str(raw.get("lastError") or ""),
        )

    def serves(self, scraped_from: str, version: str) -> bool:
        """Whether this target looks like the process a query reads: the router, or the
        model server of ``version`` (by its labels: local targets carry ``component``,
        cluster ones the names of their job, pod or service)."""
        values = list(self.labels.values())
        if scraped_from == "router":
            return any("router" in v for v in values)
        return not any("router" in v for v in values) and any(
            v == version or v.endswith(f"-{version}") for v in values
        )


def scrape_problem(
    targets: list[ScrapeTarget], scraped_from: str, version: str, url: str
) -> str | None:
    """Why Prometheus may have no data for a query that reads ``scraped_from`` (router or
    server of ``version``): it scrapes nothing, every target is down, or the targets of
    that process are. None when its scrapes look healthy."""
    if not targets:
        return (
            f"Prometheus at {url} scrapes nothing: it has no active targets (check its "
            "scrape configuration and, for file_sd, that the targets file exists)"
        )
    if not any(t.health == "up" for t in targets):
        down = [t for t in targets if t.health == "down"]
        if down:
            return (
                f"Prometheus has no healthy target: {len(down)} of {len(targets)} are down "
                f"({down[0].name}: {down[0].error or 'scrape failed'})"
            )
        return f"Prometheus has not scraped any of its {len(targets)} targets yet"
    what = "the router" if scraped_from == "router" else f"the model server of {version}"
    relevant = [t for t in targets if t.serves(scraped_from, version)]
    if relevant and not any(t.health == "up" for t in relevant):
        why = relevant[0].error or relevant[0].health
        return f"Prometheus has no healthy target for {what} ({relevant[0].name}: {why})"
    return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _number(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise QueryFailedError(f"Prometheus returned a non-numeric value {raw!r}") from exc
    if math.isnan(value):
        raise NoDataError("the query's value is NaN (no observations in the window)")
    return value


def _single_value(data: dict[str, Any]) -> float:
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1])
    if kind != "vector" or not isinstance(result, list):
        raise QueryFailedError(
            f"the query returned a {kind or 'malformed'} result; a gate needs an instant vector "
            "with one series (or a scalar)"
        )
    if not result:
        raise NoDataError("the query returned no series (no data for this version in the window)")
    if len(result) > 1:
        shown = ", ".join(
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.get("metric", {}).items())) + "}"
            for s in result[:MAX_SERIES_SHOWN]
        )
        more = (
            f" and {len(result) - MAX_SERIES_SHOWN} more" if len(result) > MAX_SERIES_SHOWN else ""
        )
        raise AmbiguousResultError(
            f"the query returned {len(result)} series ({shown}{more}); a gate needs exactly one: "
            "aggregate it, e.g. with sum(...) or max(...)"
        )
    value = result[0].get("value")
    if not isinstance(value, list) or len(value) != 2:
        raise QueryFailedError(f"malformed sample in Prometheus answer: {result[0]!r}")
    return _number(value[1])
