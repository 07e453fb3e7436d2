"""Scrape the local processes' ``/metrics`` and answer windowed questions about them.

This is the data half of the embedded metric source used when no Prometheus
binary is available: it keeps a short ring of timestamped snapshots per target
(parsed with prometheus_client's text parser) and computes what the built-in
gates need over a look-back window, the way PromQL's ``increase`` and
``histogram_quantile`` would: counter increases (a drop is a counter reset, as
after a process restart), the latest gauge values, and quantiles interpolated
linearly inside histogram buckets.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Series = dict[tuple[str, Labels], float]

KEEP_S = 600.0
"""Seconds of snapshots kept per target: longer than any local analysis interval."""
SPARSE_EVERY_S = 60.0
SPARSE_KEEP_S = 3 * 3600.0
"""Beyond the dense ring, one snapshot a minute is kept for three hours: a compare gate
counts since its step began, and a step can last longer than the dense ring."""


@dataclass(frozen=True)
class Snapshot:
    t: float
    series: Series


def parse(text: str) -> Series:
    """All samples of a Prometheus text exposition, keyed by sample name and labels."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return out


def _matches(labels: Labels, match: Mapping[str, str]) -> bool:
    d = dict(labels)
    return all(d.get(k) == v for k, v in match.items())


def increase(
    old: Series | None, new: Series, name: str, match: Mapping[str, str]
) -> dict[Labels, float]:
    """Per-series increase of counter ``name`` from ``old`` to ``new`` (reset-aware)."""
    out: dict[Labels, float] = {}
    for (sample, labels), value in new.items():
        if sample != name or not _matches(labels, match):
            continue
        before = old.get((sample, labels), 0.0) if old is not None else 0.0
        out[labels] = value - before if value >= before else value
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Quantile ``q`` from cumulative ``(le, count)`` buckets, as PromQL computes it."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return ordered[-1][0]


class Scraper:
    """Polls each target's ``/metrics`` in a background thread and keeps recent snapshots."""

    def __init__(
        self,
        interval_s: float = 1.0,
        keep_s: float = KEEP_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval_s = interval_s
        self.keep_s = keep_s
        self._targets: dict[str, str] = {}
        self._snaps: dict[str, deque[Snapshot]] = {}
        self._sparse: dict[str, deque[Snapshot]] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock = clock

    def set_targets(self, targets: Mapping[str, str]) -> None:
        """Replace the targets: ``{name: metrics URL}`` (history of a kept name is kept)."""
        with self._lock:
            self._targets = dict(targets)
            for name in list(self._snaps):
                if name not in self._targets:
                    del self._snaps[name]
                    self._sparse.pop(name, None)
            for name in list(self._errors):
                if name not in self._targets:
                    del self._errors[name]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="kanaria-scraper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        with httpx.Client(timeout=max(0.5, self.interval_s)) as client:
            while not self._stop.is_set():
                self.scrape_once(client)
                self._stop.wait(self.interval_s)

    def scrape_once(self, client: httpx.Client) -> None:
        with self._lock:
            targets = dict(self._targets)
        for name, url in targets.items():
            try:
                response = client.get(url)
                response.raise_for_status()
                series = parse(response.text)
            except (httpx.HTTPError, ValueError) as exc:
                with self._lock:
                    self._errors[name] = f"{url}: {exc}"
                continue
            self.record(name, series, self._clock())

    def record(self, name: str, series: Series, t: float) -> None:
        """Keep one snapshot of target ``name`` taken at unix time ``t``."""
        with self._lock:
            if name not in self._targets:
                return
            ring = self._snaps.setdefault(name, deque())
            ring.append(Snapshot(t, series))
            while ring and t - ring[0].t > self.keep_s:
                ring.popleft()
            sparse = self._sparse.setdefault(name, deque())
            if not sparse or t - sparse[-1].t >= SPARSE_EVERY_S:
                sparse.append(Snapshot(t, series))
            while sparse and t - sparse[0].t > SPARSE_KEEP_S:
                sparse.popleft()
            self._errors.pop(name, None)

    def targets(self) -> dict[str, str]:
        """The current targets: ``{name: metrics URL}``."""
        with self._lock:
            return dict(self._targets)

    def errors(self) -> dict[str, str]:
        """Targets whose last scrape failed, with why."""
        with self._lock:
            return dict(self._errors)

    def window(
        self, seconds: float, now: float | None = None
    ) -> list[tuple[Series | None, Series]]:
        """Per target, the snapshot at the window's start (None: target is newer than the
        window, so it counts from zero) and the newest snapshot."""
        end = self._clock() if now is None else now
        out: list[tuple[Series | None, Series]] = []
        with self._lock:
            for name, ring in self._snaps.items():
                if not ring:
                    continue
                newest = ring[-1]
                start: Series | None = None
                if ring[0].t > end - seconds:
                    # Older than the dense ring: the first sparse snapshot inside the
                    # window (a minute late at most, never before the window began).
                    for snap in self._sparse.get(name, ()):
                        if end - seconds <= snap.t < ring[0].t:
                            start = snap.series
                            break
                    if start is not None:
                        out.append((start, newest.series))
                        continue
                for snap in ring:
                    if snap.t <= end - seconds:
                        start = snap.series
                    else:
                        break
                if start is None and ring[0].t < end - seconds + self.interval_s * 1.5:
                    # The first snapshot is (almost) as old as the window: count from it.
                    start = ring[0].series
                out.append((start, newest.series))
        return out

    def counter_increase(
        self,
        name: str,
        match: Mapping[str, str],
        seconds: float,
        by: str | tuple[str, ...] | None = None,
    ) -> dict[str, float]:
        """Increase of counter ``name`` over the window, summed (grouped by label ``by``;
        by several labels, keyed by their values joined with ``/``)."""
        keys = (by,) if isinstance(by, str) else (by or ())
        totals: dict[str, float] = {}
        for old, new in self.window(seconds):
            for labels, delta in increase(old, new, name, match).items():
                d = dict(labels)
                key = "/".join(d.get(k, "") for k in keys)
                totals[key] = totals.get(key, 0.0) + delta
        return totals

    def quantile(
        self, q: float, name: str, match: Mapping[str, str], seconds: float
    ) -> float | None:
        """Quantile ``q`` of histogram ``name`` over the window (buckets summed over series)."""
        buckets: dict[float, float] = {}
        for old, new in self.window(seconds):
            for labels, delta in increase(old, new, f"{name}_bucket", match).items():
                le = float(dict(labels)["le"])
                buckets[le] = buckets.get(le, 0.0) + delta
        return histogram_quantile(q, buckets.items())

    def gauge_max(self, name: str, match: Mapping[str, str], seconds: float) -> float | None:
        """Largest value of gauge ``name`` among matching series over the last ``seconds``
        (PromQL ``max(max_over_time(...))``)."""
        end = self._clock()
        values: list[float] = []
        with self._lock:
            for ring in self._snaps.values():
                for snap in ring:
                    if snap.t < end - seconds and snap is not ring[-1]:
                        continue
                    values.extend(
                        value
                        for (sample, labels), value in snap.series.items()
                        if sample == name and _matches(labels, match) and not math.isnan(value)
                    )
        return max(values) if values else None
