"""Mirroring: copies of live requests to a shadow version, compared, never returned.

A copy is handed over after the primary answered (so it can never delay it) to
a second process, the mirror worker (:mod:`kanaria_router.mirror_worker`),
which sends it, compares the shadow's answer with the primary's and reports the
outcome. Why a process rather than tasks on the router's own event loop: a
copy costs as much CPU as a primary, and on the router's loop that CPU came out
of the primaries' latency (a 100 ms shadow raised client p99 by 40-60% at
saturation). The worker runs at a lower priority (nice 19 by default), so the
kernel gives live requests the CPU first, and copies use what is left, on this
core or any other, plus a small guaranteed share on a saturated core.

What the router still does per copy is small: encode one frame (a few
microseconds) and write the frames of a loop pass in one call. It counts copies
as outstanding from hand-off until the worker reports them; at
``queue_size + concurrency`` outstanding, or ``max_bytes`` of their bodies
(large tensors), further copies are dropped and counted,
so a slow, dead or starved shadow costs neither memory nor client latency.
While a worker starts (a reload added the first mirror, or a worker that died is
being replaced) its copies are held in the router, as encoded frames within the
same two bounds, and written the moment it is ready; only a worker that fails to
start loses them (counted as dropped).
Nothing here can raise into the client's request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from multidict import CIMultiDict
from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kanaria import metric_names as mn
from kanaria.routes import Comparison
from kanaria_router.metrics import RouterMetrics
from kanaria_router.mirror_wire import READY, Copy, copy_size, encode_copy, parse_report

log = logging.getLogger("kanaria.router.mirror")

RESTART_DELAY_S = 1.0
"""Pause before a worker that exited unexpectedly is started again."""

READY_TIMEOUT_S = 60.0
"""How long a starting worker may take to say it is ready (imports on a slow disk)."""


@dataclass(frozen=True)
class MirrorJob:
    """One copy to send, with what is needed to compare its answer."""

    model: str
    shadow: str
    url: str
    baseline: str
    headers: CIMultiDict[str]
    """The primary's forwarded headers (the primary is done with them)."""
    body: bytes
    request_id: str
    primary_status: int
    primary_body: bytes
    comparison: Comparison


class Mirrorer:
    """Hands copies to the mirror worker, bounds them, and counts their outcomes."""

    def __init__(
        self,
        metrics: RouterMetrics,
        queue_size: int,
        concurrency: int,
        timeout_s: float,
        disagreement_logs_per_minute: int,
        priority: str = "low",
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.metrics = metrics
        self.capacity = queue_size + concurrency
        """Copies outstanding (in the pipe, queued or in flight in the worker) at most."""
        self.command = [
            *(sys.executable, "-m", "kanaria_router.mirror_worker"),
            *("--concurrency", str(concurrency), "--timeout", str(timeout_s)),
            *("--disagreement-logs-per-minute", str(disagreement_logs_per_minute)),
            *("--priority", priority),
        ]
        self.outstanding: collections.Counter[tuple[str, str]] = collections.Counter()
        """Copies handed over and not yet reported, per (model, shadow)."""
        self.total_outstanding = 0
        self.max_bytes = max_bytes
        """Request plus primary answer bytes outstanding at most (one copy always fits)."""
        self.outstanding_bytes = 0
        self._outcomes: dict[tuple[str, str, str], Counter] = {}
        self._results: dict[tuple[str, str, str, str], Counter] = {}
        self._stdin: asyncio.StreamWriter | None = None
        self._frames: list[bytes] = []
        self._supervisor: asyncio.Task[None] | None = None
        self.pid: int | None = None
        """The running worker's PID (its CPU and memory are exported from /proc)."""
        metrics.registry.register(WorkerCollector(self))
        self._first_attempt: asyncio.Future[None] | None = None
        """Resolved once the first worker is ready or failed to start."""
        self._stopping = False

    @property
    def running(self) -> bool:
        """Whether a worker is up and reading copies."""
        return self._stdin is not None

    def count(self, model: str, shadow: str, outcome: str, n: int = 1) -> None:
        """Count copies' outcome (label children cached: a slow shadow makes the
        router drop a copy per request, so this runs on the hot path)."""
        key = (model, shadow, outcome)
        child = self._outcomes.get(key)
        if child is None:
            child = self._outcomes[key] = self.metrics.mirror.labels(model, shadow, outcome)
        child.inc(n)

    def full(self) -> bool:
        """Whether the next copy would be dropped: lets the caller skip building it.

        Not while a worker starts: then copies are held (within the same bounds)."""
        return (
            self._supervisor is None
            or self._stopping
            or self.total_outstanding >= self.capacity
            or self.outstanding_bytes >= self.max_bytes
        )

    def offer(self, job: MirrorJob) -> None:
        """Hand a copy to the worker, or drop and count it (never blocks)."""
        size = copy_size(job.body, job.primary_body)
        if self.full() or (
            self.total_outstanding and self.outstanding_bytes + size > self.max_bytes
        ):
            self.count(job.model, job.shadow, "dropped")
            return
        frame = encode_copy(
            Copy(
                model=job.model,
                shadow=job.shadow,
                url=job.url,
                baseline=job.baseline,
                request_id=job.request_id,
                headers=list(job.headers.items()),
                body=job.body,
                primary_status=job.primary_status,
                primary_body=job.primary_body,
                rtol=job.comparison.rtol,
                atol=job.comparison.atol,
                log_percent=job.comparison.logDisagreements,
            )
        )
        self.outstanding[job.model, job.shadow] += 1
        self.total_outstanding += 1
        self.outstanding_bytes += size
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(frame)

    def _flush(self) -> None:
        """Write the frames of one loop pass in one call (one system call, not one per copy).

        Without a ready worker the frames stay held: the worker's start flushes them."""
        if self._stdin is None:
            return
        frames, self._frames = self._frames, []
        if frames:
            self._stdin.write(b"".join(frames))

    # --- worker lifecycle ---------------------------------------------------

    def ensure_started(self) -> None:
        """Start the worker in the background if it is not running (routes gained a mirror).

        Copies offered before it is ready are held (within the outstanding bounds)
        and handed over once it is. Outside a running event loop this does nothing
        (then :meth:`start` does it).
        """
        if self._supervisor is not None or self._stopping:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._first_attempt = loop.create_future()
        self._supervisor = loop.create_task(
            self._supervise(self._first_attempt), name="mirror-worker"
        )

    async def start(self) -> None:
        """Start the worker and wait until it reads copies (or failed to start, logged)."""
        self.ensure_started()
        if self._first_attempt is not None:
            await asyncio.shield(self._first_attempt)

    async def stop(self) -> None:
        """Close the worker's input (it exits at its end) and wait briefly for it."""
        self._stopping = True
        if self._supervisor is not None:
            self._flush()
            if self._stdin is not None:
                self._stdin.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor), 3.0)
            except TimeoutError:
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor
            self._supervisor = None

    async def _supervise(self, ready: asyncio.Future[None] | None) -> None:
        """Run the worker; restart it after an unexpected exit, until :meth:`stop`."""
        try:
            while not self._stopping:
                await self._run_once(ready)
                ready = None
                if not self._stopping:
                    await asyncio.sleep(RESTART_DELAY_S)
        finally:
            _resolve(ready)

    async def _run_once(self, ready: asyncio.Future[None] | None) -> None:
        try:
            level = logging.getLevelName(log.getEffectiveLevel())
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                *("--log-level", level),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=2**20,
            )
        except OSError as exc:
            log.error("cannot start the mirror worker (%s): copies are dropped", exc)
            self._lose_outstanding()
            _resolve(ready)
            return
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            try:
                first = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
            except TimeoutError:
                first = b""
            if first != READY:
                log.error(
                    "mirror worker did not start (said %r): the copies held for it are dropped",
                    first,
                )
            else:
                self._stdin = proc.stdin
                self.pid = proc.pid
                log.info(
                    "mirror worker %d started (%d copies held while it started)",
                    proc.pid,
                    len(self._frames),
                )
                self._flush()
                _resolve(ready)
                while line := await proc.stdout.readline():
                    self._apply(line)
        finally:
            _resolve(ready)
            self._stdin = None
            self.pid = None
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            code = await proc.wait()
            self._lose_outstanding()
            if not self._stopping:
                log.error("mirror worker exited with %s; starting a new one", code)

    def _apply(self, line: bytes) -> None:
        """Count a worker report and release its copies from the outstanding bound."""
        try:
            tally = parse_report(line)
        except ValueError as exc:
            log.error("%s", exc)
            return
        for (model, shadow, outcome), n in tally.outcomes.items():
            self.count(model, shadow, outcome, n)
            self.outstanding[model, shadow] -= n
            self.total_outstanding -= n
        self.outstanding_bytes -= tally.size
        for key, n in tally.comparisons.items():
            child = self._results.get(key)
            if child is None:
                child = self._results[key] = self.metrics.comparisons.labels(*key)
            child.inc(n)

    def _lose_outstanding(self) -> None:
        """A worker ended (or never started): its unreported copies, and those held for
        it, never reached a shadow's count."""
        self._frames = []
        for (model, shadow), n in self.outstanding.items():
            if n > 0:
                self.count(model, shadow, "dropped", n)
        self.outstanding = collections.Counter()
        self.total_outstanding = 0
        self.outstanding_bytes = 0


class WorkerCollector(Collector):
    """The mirror worker's CPU and memory, read from /proc at scrape time: the
    router's process metrics cover only the router, and the dashboard's CPU panels
    should not lose the work that moved to the worker."""

    def __init__(self, mirror: Mirrorer) -> None:
        self.mirror = mirror

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            mn.ROUTER_MIRROR_WORKER_CPU.removesuffix("_total"),
            "CPU time (user + system) of the router's mirror worker process, seconds.",
        )
        memory = GaugeMetricFamily(
            mn.ROUTER_MIRROR_WORKER_MEMORY, "Resident memory of the mirror worker, bytes."
        )
        usage = _proc_usage(self.mirror.pid) if self.mirror.pid is not None else None
        if usage is not None:
            cpu.add_metric([], usage[0])
            memory.add_metric([], usage[1])
        yield cpu
        yield memory


def _proc_usage(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, resident bytes) of ``pid`` from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    rss_pages = int(fields[21])
    return ticks / os.sysconf("SC_CLK_TCK"), float(rss_pages * os.sysconf("SC_PAGE_SIZE"))


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
