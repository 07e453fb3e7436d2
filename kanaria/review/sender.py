"""Hand review cases to a sink without ever slowing the request that made them.

The serving path calls :meth:`ReviewSender.offer` while it answers a client:
an append to a bounded buffer and a wake-up of the delivery task, O(1), never
awaiting anything. When the buffer is full the case is dropped and counted
(``kanaria_review_cases_total{outcome="dropped"}``): a review queue that cannot
keep up loses cases, never client latency, the same choice the router's mirror
makes for shadow copies.

Delivery is an asyncio task on the caller's event loop (the router's aiohttp
loop): it takes up to ``batch_size`` cases at a time and hands them to the sink,
retrying a failure that may pass (connection refused, 5xx, 429) with
exponential backoff for a bounded number of attempts; a refusal that will not
pass (another 4xx) fails the batch at once. A task rather than a thread: the
work per batch is one HTTP call, asyncio has no lock between ``offer`` and the
task, and a thread would take the GIL from the loop at its own moments. A batch
per call keeps the loop's share small even when every request is for review.

Only the loop's own thread may call ``offer`` (asyncio's objects are not
thread-safe); a process without a running loop uses :meth:`start` from a
coroutine it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from kanaria.review.case import PendingCase, ReviewCase
from kanaria.review.metrics import CaseOutcome, ReviewMetrics

log = logging.getLogger(__name__)


LINGER_S = 0.05
"""How long the delivery task lets a batch fill before sending what it has: a review
case reaches its sink up to 50 ms later, and a busy router makes one call per batch
instead of one per case (bench/automation.py measures both)."""


class DeliveryError(Exception):
    """A sink could not deliver a batch; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sink(Protocol):
    """Where review cases go: a webhook, a labelling tool.

    ``deliver`` takes a whole batch or raises :class:`DeliveryError`. The sender
    retries the whole batch, so a batch whose answer was lost arrives twice: a
    webhook receiver tells the copies apart by request id; in Label Studio the
    task is there twice, and the label puller still sends one label per request.
    """

    name: str
    """The ``sink`` label of the metrics (``webhook``, ``label-studio``)."""

    async def deliver(self, cases: Sequence[ReviewCase]) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Retry:
    """Bounded attempts with exponential backoff (and a little jitter, so that many
    senders failing together do not retry together)."""

    attempts: int = 5
    """Tries per batch, the first included; then the batch counts as failed."""
    first_delay_s: float = 0.5
    """Seconds before the second try."""
    multiplier: float = 2.0
    """Each further wait is this many times the one before."""
    max_delay_s: float = 30.0
    """No wait is longer than this (seconds)."""
    jitter: float = 0.1
    """Each wait is lengthened by up to this fraction of itself, at random."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts must be at least 1")
        if self.first_delay_s < 0 or self.max_delay_s < 0 or self.multiplier < 1:
            raise ValueError("Retry delays must be >= 0 and multiplier >= 1")

    def delay(self, failed_attempts: int, rand: float = 0.0) -> float:
        """Seconds to wait after ``failed_attempts`` (>= 1) failures; ``rand`` in [0, 1)."""
        base = self.first_delay_s * self.multiplier ** (failed_attempts - 1)
        return min(base, self.max_delay_s) * (1 + self.jitter * rand)


@dataclass
class Counts:
    """What became of the cases offered to one sender (mirrors the counters)."""

    offered: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


class ReviewSender:
    """One sink's bounded buffer and delivery task, for one ModelDeployment."""

    def __init__(
        self,
        sink: Sink,
        model: str,
        metrics: ReviewMetrics,
        *,
        capacity: int = 1000,
        batch_size: int = 50,
        retry: Retry | None = None,
        linger_s: float = LINGER_S,
    ) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError("capacity and batch_size must be at least 1")
        if linger_s < 0:
            raise ValueError("linger_s must be >= 0")
        self.linger_s = linger_s
        self.sink = sink
        self.model = model
        self.capacity = capacity
        self.batch_size = batch_size
        self.retry = retry or Retry()
        self.counts = Counts()
        self._metrics = metrics
        self._buffer: deque[ReviewCase | PendingCase] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._counters: dict[tuple[str, CaseOutcome], Counter] = {}
        metrics.watch_depth(model, sink.name, self.depth)

    def depth(self) -> int:
        """Cases waiting in the buffer (not the batch being delivered)."""
        return len(self._buffer)

    def offer(self, case: ReviewCase | PendingCase) -> bool:
        """Queue ``case`` for the sink; False (and counted) when the buffer is full or closed.

        O(1) and never waits: the caller is answering a client. A
        :class:`~kanaria.review.case.PendingCase` is built on the delivery task, with
        its batch; one that cannot be built counts as failed.
        """
        self.counts.offered += 1
        if self._closed or len(self._buffer) >= self.capacity:
            self.counts.dropped += 1
            self._count(case.version, "dropped", 1)
            return False
        self._buffer.append(case)
        self._idle.clear()
        self._wake.set()
        return True

    def start(self) -> None:
        """Start the delivery task on the running loop (call from a coroutine)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"review-{self.model}-{self.sink.name}"
            )

    async def drained(self) -> None:
        """Return once every case offered so far was delivered or given up on."""
        await self._idle.wait()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stop taking cases, deliver what is buffered for up to ``timeout_s`` seconds,
        then stop; cases still held then count as dropped. Closes the sink."""
        self._closed = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = list(self._buffer)  # pending cases too: never built, dropped
        self._buffer.clear()
        for case in left:
            self.counts.dropped += 1
            self._count(case.version, "dropped", 1)
        self._metrics.forget_depth(self.model, self.sink.name)
        await self.sink.aclose()

    async def _run(self) -> None:
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._buffer) < self.batch_size and self.linger_s > 0:
                # Let a batch fill: one call per case costs the router's loop several
                # times the request's own work when every answer is for review.
                await asyncio.sleep(self.linger_s)
            taken = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            batch = self._built(taken)
            if not batch:
                continue
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                # Closing while a batch was in flight: it was not delivered.
                for case in batch:
                    self.counts.dropped += 1
                    self._count(case.version, "dropped", 1)
                raise

    def _built(self, taken: list[ReviewCase | PendingCase]) -> list[ReviewCase]:
        """The batch as cases: pending ones built here, on the delivery task, not on the
        request path; one that cannot be built is logged and counts as failed."""
        batch: list[ReviewCase] = []
        for case in taken:
            if isinstance(case, PendingCase):
                try:
                    batch.append(case.build())
                except Exception as exc:  # a bug as well: it must not end the task
                    if isinstance(exc, ValueError):
                        log.warning("review case of %s not made: %s", self.model, exc)
                    else:
                        log.exception("review case of %s not made", self.model)
                    self.counts.failed += 1
                    self._count(case.version, "failed", 1)
            else:
                batch.append(case)
        return batch

    async def _deliver(self, batch: list[ReviewCase]) -> None:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await self.sink.deliver(batch)
            except DeliveryError as exc:
                if not exc.retryable or attempt == self.retry.attempts:
                    log.warning(
                        "review sink %s of %s gave up on %d case(s) after %d attempt(s): %s",
                        self.sink.name, self.model, len(batch), attempt, exc,
                    )  # fmt: skip
                    self._outcome(batch, "failed")
                    return
                self.counts.retries += 1
                self._metrics.retries.labels(self.model, self.sink.name).inc()
                await asyncio.sleep(self.retry.delay(attempt, random.random()))
            except Exception:
                # A bug in a sink must not end the task: later cases would pile up unseen.
                log.exception(
                    "review sink %s of %s failed unexpectedly", self.sink.name, self.model
                )
                self._outcome(batch, "failed")
                return
            else:
                self._outcome(batch, "sent")
                return

    def _outcome(self, batch: Sequence[ReviewCase], outcome: CaseOutcome) -> None:
        by_version: dict[str, int] = {}
        for case in batch:
            by_version[case.version] = by_version.get(case.version, 0) + 1
        for version, n in by_version.items():
            self._count(version, outcome, n)
        if outcome == "sent":
            self.counts.sent += len(batch)
        else:
            self.counts.failed += len(batch)

    def _count(self, version: str, outcome: CaseOutcome, n: int) -> None:
        child = self._counters.get((version, outcome))
        if child is None:
            child = self._metrics.cases.labels(self.model, version, self.sink.name, outcome)
            self._counters[(version, outcome)] = child
        child.inc(n)
