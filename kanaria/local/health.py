"""What ``kanaria up`` checks each pass besides readiness, so ``kanaria status`` can say it.

A rollout that never gets evidence looks, from the engine's side, exactly like one
waiting for traffic: every round is Inconclusive. Two causes are invisible there
and obvious here, where the runtime knows what it started:

- the metric source does not see the processes: Prometheus scrapes none (or not
  all) of the targets ``kanaria up`` wrote for it, or their scrapes fail;
- a shadow is starved of copies: the router drops the copies meant for it and
  the shadow answers none (its mirror worker gets no CPU, or the shadow does not
  answer and the copy queue is full).

:class:`Checks` keeps the little history these need (when a target was first
expected, the router's copy counters over the last analysis interval) and turns
one pass's observations into sentences for ``LocalState.problems``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path

from kanaria import metric_names as names
from kanaria.analysis import SourceUnavailableError
from kanaria.analysis.measure import starvation
from kanaria.analysis.prometheus import PrometheusSource, ScrapeTarget
from kanaria.local.scrape import Scraper, Series

TARGET_GRACE_S = 5.0
"""Seconds a target may be unseen or unscraped after it was added (Prometheus re-reads
the targets file every 0.5 s and scrapes every 0.5 s; a new process needs a moment)."""


def mirror_totals(series: Series, model: str, version: str) -> tuple[float, float]:
    """``(sent, dropped)`` copies mirrored to ``version`` so far, from the router's metrics."""
    sent = dropped = 0.0
    for (sample, labels), value in series.items():
        d = dict(labels)
        if sample != names.ROUTER_MIRROR or (d.get("model"), d.get("version")) != (model, version):
            continue
        if d.get("outcome") == "sent":
            sent += value
        elif d.get("outcome") == "dropped":
            dropped += value
    return sent, dropped


class Checks:
    """The health checks of one ``kanaria up`` (see the module docstring)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._expected_since: dict[str, float] = {}
        self._mirror: deque[tuple[float, float, float]] = deque()
        """(time, sent, dropped) of the current shadow, newest last."""
        self._shadow: str | None = None

    def expect(self, targets: Iterable[str], now: float) -> None:
        """The metric targets ``kanaria up`` just handed to its metric source."""
        wanted = set(targets)
        self._expected_since = {n: self._expected_since.get(n, now) for n in wanted}

    def _settled(self, now: float) -> list[str]:
        return sorted(n for n, t in self._expected_since.items() if now - t >= TARGET_GRACE_S)

    def prometheus(self, source: PrometheusSource, targets_file: Path, now: float) -> list[str]:
        """Problems of a real Prometheus: unreachable, scraping none or not all of the
        targets, or failing to scrape some."""
        settled = self._settled(now)
        if not settled:
            return []
        try:
            active = source.targets()
        except SourceUnavailableError as exc:
            return [exc.reason]
        by_name: dict[str, ScrapeTarget] = {t.name: t for t in active}
        missing = [n for n in settled if n not in by_name]
        if len(missing) == len(settled):
            return [
                f"Prometheus scrapes none of the {len(settled)} targets kanaria up wrote to "
                f"{targets_file} ({len(active)} active targets), so every gate reads "
                '"no requests": check its configuration and logs/prometheus.log'
            ]
        problems = []
        if missing:
            problems.append(f"Prometheus does not scrape {', '.join(missing)}")
        down = [by_name[n] for n in settled if n in by_name and by_name[n].health == "down"]
        problems.extend(f"Prometheus cannot scrape {t.name}: {t.error}" for t in down)
        return problems

    def scraper(self, scraper: Scraper, now: float) -> list[str]:
        """Problems of the embedded scraper: targets whose scrapes fail."""
        errors = scraper.errors()
        return [
            f"the embedded scraper cannot read {n}: {errors[n]}"
            for n in self._settled(now)
            if n in errors
        ]

    def shadow(
        self, shadow: str | None, series: Series | None, window_s: float, now: float
    ) -> str | None:
        """A shadow starved of copies over the last ``window_s`` seconds, in words.

        ``series`` is the router's metrics this pass (None: not readable). Judged only
        once a whole window of samples exists for the current shadow."""
        if shadow != self._shadow:
            self._shadow = shadow
            self._mirror.clear()
        if shadow is None or series is None:
            return None
        sent, dropped = mirror_totals(series, self.model, shadow)
        self._mirror.append((now, sent, dropped))
        while len(self._mirror) > 1 and now - self._mirror[1][0] >= window_s:
            self._mirror.popleft()
        t0, sent0, dropped0 = self._mirror[0]
        if now - t0 < window_s:
            return None
        return starvation(
            max(0.0, dropped - dropped0), max(0.0, sent - sent0), shadow, f"{now - t0:.0f}s"
        )
