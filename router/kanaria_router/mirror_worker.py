"""The mirror worker: a low-priority process that sends shadow copies and compares answers.

Started by the router (:class:`kanaria_router.mirror.Mirrorer`), never by hand:
it reads copies from standard input (:mod:`kanaria_router.mirror_wire` frames),
sends each to its shadow with at most ``--concurrency`` in flight, compares the
shadow's answer with the primary's, and writes outcome reports to standard
output. It lowers its own CPU priority first (``--priority``):

- ``low`` (default): ``nice 19``: copies get CPU time nothing else wants, plus a
  small guaranteed share (~1.5% of a core) under contention, so a shadow still
  gets copies when the router's core is saturated (bench/README.md, setup 3).
- ``idle``: Linux ``SCHED_IDLE``. The worker runs only on CPU time nothing else
  wants, and a client request waking the router takes the CPU from it at once
  (with ``low`` the kernel may let the running worker finish its slice, ~1.5 ms,
  which once showed as +0.8 ms client p99 at low load); on a saturated core it
  gets next to nothing, so a shadow starves (it may not even finish starting:
  copies are then held, then dropped and counted).
- ``normal``: the router's priority: every copy is sent, at the clients' expense.

When copies get too little CPU the router, which bounds the copies outstanding,
drops and counts the rest instead of slowing its clients. The end of standard
input (the router stopped or died) ends the worker.

    python -m kanaria_router.mirror_worker --concurrency 16 --timeout 10 --priority low
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
from typing import Any

import aiohttp
import orjson

from kanaria_router.compare import compare_responses
from kanaria_router.mirror_wire import (
    HEADER,
    READY,
    Copy,
    Tally,
    copy_size,
    decode_copy,
    frame_lengths,
)
from kanaria_router.ratelimit import RateLimiter

log = logging.getLogger("kanaria.router.mirror")

SHADOW_HEADER = "x-kanaria-shadow"
"""Set on mirrored copies, so a shadow's server can tell them from live traffic."""


REPORT_EVERY_S = 0.01
"""Outcomes are batched this long: each report wakes the router, so at thousands of
copies a second one line per copy would cost it more than the copies save."""

PRIORITIES = ("idle", "low", "normal")


def lower_priority(priority: str) -> None:
    """Apply ``--priority`` to this process (lowering needs no privilege on Linux;
    where it is refused anyway, copies still run, at the next lower priority)."""
    if priority == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except (AttributeError, OSError) as exc:  # not Linux, or a seccomp profile
            log.warning("mirror worker: SCHED_IDLE refused (%s); using nice 19", exc)
            priority = "low"
    if priority == "low":
        os.nice(19)


class Worker:
    """Copies in, outcomes out; one per router."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        out: asyncio.WriteTransport,
        concurrency: int,
        timeout_s: float,
        disagreement_logs_per_minute: int,
    ) -> None:
        self.session = session
        self.out = out
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.queue: asyncio.Queue[Copy] = asyncio.Queue()  # bounded by the router's accounting
        self.tally = Tally.empty()
        self._report_scheduled = False
        self._workers = [asyncio.create_task(self._work()) for _ in range(concurrency)]
        self._log_budget = (
            RateLimiter(disagreement_logs_per_minute / 60.0, disagreement_logs_per_minute)
            if disagreement_logs_per_minute > 0
            else None
        )

    async def read(self, reader: asyncio.StreamReader) -> None:
        """Queue every copy until standard input ends."""
        while True:
            try:
                header = await reader.readexactly(HEADER.size)
            except asyncio.IncompleteReadError:
                return
            meta_len, body_len, primary_len = frame_lengths(header)
            meta = await reader.readexactly(meta_len)
            body = await reader.readexactly(body_len)
            primary = await reader.readexactly(primary_len)
            self.queue.put_nowait(decode_copy(meta, body, primary))

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _report(self) -> None:
        """Write what finished since the last report (once per loop pass: batched)."""
        self._report_scheduled = False
        if self.tally:
            self.out.write(self.tally.to_line())
            self.tally = Tally.empty()

    def _finished(self) -> None:
        if not self._report_scheduled:
            self._report_scheduled = True
            asyncio.get_running_loop().call_later(REPORT_EVERY_S, self._report)

    async def _work(self) -> None:
        while True:
            copy = await self.queue.get()
            try:
                await self._send(copy)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must neither kill the worker nor lose the count
                log.exception(
                    "mirror copy of %s to %s/%s failed", copy.request_id, copy.model, copy.shadow
                )
                self.tally.outcome(copy.model, copy.shadow, "failed", _size(copy))
            self._finished()

    async def _send(self, copy: Copy) -> None:
        headers = [*copy.headers, (SHADOW_HEADER, "true")]
        try:
            async with self.session.post(
                copy.url, data=copy.body, headers=headers, timeout=self.timeout
            ) as resp:
                status = resp.status
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.outcome(copy.model, copy.shadow, "failed", _size(copy))
            log.debug("shadow %s/%s: %s", copy.model, copy.shadow, exc or type(exc).__name__)
            return
        if status >= 400:
            self.tally.outcome(copy.model, copy.shadow, "failed", _size(copy))
            return
        self.tally.outcome(copy.model, copy.shadow, "sent", _size(copy))
        if copy.primary_status < 400:  # else nothing to compare against
            self._compare(copy, body)

    def _compare(self, copy: Copy, shadow_body: bytes) -> None:
        try:
            primary = orjson.loads(copy.primary_body)
            shadow: Any = orjson.loads(shadow_body)
        except orjson.JSONDecodeError:
            primary, shadow = None, None
        verdict = compare_responses(primary, shadow, rtol=copy.rtol, atol=copy.atol)
        self.tally.comparison(copy.model, copy.shadow, copy.baseline, verdict.agree)
        if verdict.agree or self._log_budget is None:
            return
        if random.random() * 100 >= copy.log_percent:
            return
        if self._log_budget.take("log", time.monotonic()) > 0:
            return
        log.warning(
            "shadow disagreement: model=%s shadow=%s baseline=%s request_id=%s: %s",
            copy.model,
            copy.shadow,
            copy.baseline,
            copy.request_id,
            verdict.reason,
        )


def _size(copy: Copy) -> int:
    return copy_size(copy.body, copy.primary_body)


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout.buffer)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=10, keepalive_timeout=30)
    async with aiohttp.ClientSession(
        connector=connector,
        skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        worker = Worker(
            session, out, args.concurrency, args.timeout, args.disagreement_logs_per_minute
        )
        out.write(READY)
        try:
            await worker.read(reader)
        except ValueError as exc:  # a corrupt frame: the router restarts a fresh worker
            log.error("mirror worker stopping: %s", exc)
            return 1
        finally:
            await worker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kanaria_router.mirror_worker", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16, help="copies in flight at once")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per copy")
    parser.add_argument("--disagreement-logs-per-minute", type=int, default=60)
    parser.add_argument("--priority", choices=PRIORITIES, default="low", help="CPU priority")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    lower_priority(args.priority)
    # Ctrl-C in a terminal reaches the whole process group: the router drains and
    # then closes our standard input, which is how this process is meant to end
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop  # noqa: PLC0415

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
