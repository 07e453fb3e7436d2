"""Mirroring: copies of live requests to a shadow version, compared, never returned.

A copy is queued after the primary answered (so it can never delay it) into a
bounded queue drained by a fixed number of workers: a slow or dead shadow fills
the queue, and further copies are dropped and counted instead of piling up
memory or sockets. Nothing here can raise into the client's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict
from prometheus_client import Counter

from kanaria.routes import Comparison
from kanaria_router.compare import compare_responses
from kanaria_router.metrics import RouterMetrics
from kanaria_router.ratelimit import RateLimiter

log = logging.getLogger("kanaria.router.mirror")

SHADOW_HEADER = "x-kanaria-shadow"
"""Set on mirrored copies, so a shadow's server can tell them from live traffic."""


@dataclass(frozen=True)
class MirrorJob:
    """One copy to send, with what is needed to compare its answer."""

    model: str
    shadow: str
    url: str
    baseline: str
    headers: CIMultiDict[str]
    """The primary's forwarded headers (the primary is done with them); the copy
    sent adds :data:`SHADOW_HEADER`, built only for copies actually sent."""
    body: bytes
    request_id: str
    primary_status: int
    primary_body: bytes
    comparison: Comparison


class Mirrorer:
    """Bounded queue plus workers that send copies and record the outcome."""

    def __init__(
        self,
        metrics: RouterMetrics,
        queue_size: int,
        concurrency: int,
        timeout_s: float,
        disagreement_logs_per_minute: int,
    ) -> None:
        self.metrics = metrics
        self.concurrency = concurrency
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.queue: asyncio.Queue[MirrorJob] = asyncio.Queue(maxsize=queue_size)
        self.session: aiohttp.ClientSession | None = None
        self._outcomes: dict[tuple[str, str, str], Counter] = {}
        self._results: dict[tuple[str, str, str, str], Counter] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._log_budget = (
            RateLimiter(disagreement_logs_per_minute / 60.0, disagreement_logs_per_minute)
            if disagreement_logs_per_minute > 0
            else None
        )

    def count(self, model: str, shadow: str, outcome: str) -> None:
        """Count one copy's outcome (label children cached: a slow shadow makes the
        router drop a copy per request, so this runs on the hot path)."""
        key = (model, shadow, outcome)
        child = self._outcomes.get(key)
        if child is None:
            child = self._outcomes[key] = self.metrics.mirror.labels(model, shadow, outcome)
        child.inc()

    def full(self) -> bool:
        """Whether the next copy would be dropped: lets the caller skip building it."""
        return self.queue.full()

    def offer(self, job: MirrorJob) -> None:
        """Queue a copy, or drop and count it when the queue is full (never blocks)."""
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.count(job.model, job.shadow, "dropped")

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._workers = [
            asyncio.create_task(self._work(), name=f"mirror-{i}") for i in range(self.concurrency)
        ]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self._send(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a mirror bug must not kill the worker
                log.exception(
                    "mirror copy of %s to %s/%s failed", job.request_id, job.model, job.shadow
                )
            finally:
                self.queue.task_done()

    async def _send(self, job: MirrorJob) -> None:
        assert self.session is not None
        headers = job.headers.copy()
        headers[SHADOW_HEADER] = "true"
        try:
            async with self.session.post(
                job.url, data=job.body, headers=headers, timeout=self.timeout
            ) as resp:
                status = resp.status
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.count(job.model, job.shadow, "failed")
            log.debug("shadow %s/%s: %s", job.model, job.shadow, exc or type(exc).__name__)
            return
        if status >= 400:
            self.count(job.model, job.shadow, "failed")
            return
        self.count(job.model, job.shadow, "sent")
        if job.primary_status >= 400:
            return  # nothing to compare against
        self._compare(job, body)

    def _compare(self, job: MirrorJob, shadow_body: bytes) -> None:
        try:
            primary = orjson.loads(job.primary_body)
            shadow: Any = orjson.loads(shadow_body)
        except orjson.JSONDecodeError:
            primary, shadow = None, None
        verdict = compare_responses(
            primary, shadow, rtol=job.comparison.rtol, atol=job.comparison.atol
        )
        key = (job.model, job.shadow, job.baseline, "agree" if verdict.agree else "disagree")
        child = self._results.get(key)
        if child is None:
            child = self._results[key] = self.metrics.comparisons.labels(*key)
        child.inc()
        if verdict.agree or self._log_budget is None:
            return
        if random.random() * 100 >= job.comparison.logDisagreements:
            return
        if self._log_budget.take("log", time.monotonic()) > 0:
            return
        log.warning(
            "shadow disagreement: model=%s shadow=%s baseline=%s request_id=%s: %s",
            job.model,
            job.shadow,
            job.baseline,
            job.request_id,
            verdict.reason,
        )
