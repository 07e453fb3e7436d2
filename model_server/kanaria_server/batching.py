"""Dynamic batching: merge concurrent infer requests into one onnxruntime call.

Requests wait in a queue that one inference thread drains: it takes what is
queued (up to ``max_batch_size`` rows, optionally waiting ``max_batch_delay`` for
more), runs it, and hands each request its rows back on the event loop with one
``call_soon_threadsafe`` per batch. The event loop is never blocked by
onnxruntime, onnxruntime is never called from two threads, and there is no
executor or collector task in between (measured: they cost more per request
than a small model's inference). While a batch runs, new requests queue up and
form the next one: under load, batches grow by themselves; at low load, a
request runs alone at once.

A batch that fails is retried one request at a time, so one bad request never
fails the others that happened to share its batch.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kanaria_server.errors import InferenceFailedError, NotReadyError

log = logging.getLogger("kanaria_server")
Array = np.ndarray[Any, Any]
Outputs = dict[str, Array]
RunFn = Callable[[dict[str, Array]], Outputs]
BatchObserver = Callable[[dict[str, Array], Outputs, float], None]
"""Called in the inference thread after each successful batch: (inputs, outputs, seconds)."""


@dataclass
class _Job:
    inputs: dict[str, Array]
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[Outputs]
    enqueued: float


def _key(inputs: dict[str, Array]) -> tuple[Any, ...]:
    """Requests can share a batch only if all dimensions but the first agree."""
    return tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(inputs.items()))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _deliver(batch: list[_Job], results: list[Outputs | BaseException]) -> None:
    """On the event loop: hand each waiting request its result (skipping cancelled ones)."""
    for job, result in zip(batch, results, strict=True):
        if job.future.done():
            continue
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)


def _first_line(exc: BaseException) -> str:
    """onnxruntime's messages repeat themselves with log prefixes: keep the gist."""
    text = _ANSI.sub("", str(exc)).strip()
    if not text:
        return type(exc).__name__
    line = " ".join(text.rsplit("Status Message:", 1)[-1].split())
    if "] " in line:  # drop the C++ source location and template signature
        line = line.rsplit("] ", 1)[1]
    return line[:300]


class Batcher:
    """A queue of validated requests drained by one inference thread, in batches."""

    def __init__(
        self,
        run: RunFn,
        batchable: bool,
        max_batch_size: int,
        max_batch_delay_s: float,
        observe_batch: BatchObserver | None = None,
        observe_queue: Callable[[float], None] | None = None,
    ) -> None:
        self._run = run
        self._batching = batchable and max_batch_size > 1
        self._max_rows = max_batch_size
        self._delay = max_batch_delay_s
        self._observe_batch = observe_batch
        self._observe_queue = observe_queue
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="inference", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    async def close(self) -> None:
        """Finish every queued request, then stop the inference thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    async def submit(self, inputs: dict[str, Array], rows: int) -> Outputs:
        """Queue one validated request and wait for its own rows of every output."""
        if self._closing or self._loop is None:
            raise NotReadyError("server is shutting down")
        future: asyncio.Future[Outputs] = self._loop.create_future()
        job = _Job(inputs, rows, _key(inputs), future, time.perf_counter())
        with self._cond:
            self._pending.append(job)
            self._cond.notify()
        return await future

    def _work(self) -> None:
        """Inference thread: take a batch (waiting up to the delay to fill it), run, deliver."""
        assert self._loop is not None
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return  # closing and drained
                batch = self._take()
                if self._batching and self._delay > 0 and not self._closing:
                    deadline = time.monotonic() + self._delay
                    while sum(j.rows for j in batch) < self._max_rows:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or self._closing:
                            break
                        self._cond.wait(remaining)
                        self._fill(batch)
            started = time.perf_counter()
            if self._observe_queue is not None:
                for job in batch:
                    self._observe_queue(started - job.enqueued)
            results = self._execute(batch)
            self._loop.call_soon_threadsafe(_deliver, batch, results)

    def _take(self) -> list[_Job]:
        first = self._pending.popleft()
        batch = [first]
        if not self._batching:
            return batch
        rows = first.rows
        skipped: list[_Job] = []
        while self._pending and rows < self._max_rows:
            job = self._pending.popleft()
            if job.key != first.key or rows + job.rows > self._max_rows:
                skipped.append(job)
                if rows + job.rows > self._max_rows:
                    break
                continue
            batch.append(job)
            rows += job.rows
        self._pending.extendleft(reversed(skipped))
        return batch

    def _fill(self, batch: list[_Job]) -> None:
        rows = sum(j.rows for j in batch)
        kept: deque[_Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.key == batch[0].key and rows + job.rows <= self._max_rows:
                batch.append(job)
                rows += job.rows
            else:
                kept.append(job)
        self._pending.extendleft(reversed(kept))

    def _observe(self, inputs: dict[str, Array], outputs: Outputs, seconds: float) -> None:
        if self._observe_batch is not None:
            try:
                self._observe_batch(inputs, outputs, seconds)
            except Exception:  # a monitoring bug must not fail predictions
                log.exception("monitoring of a batch failed")

    def _run_observed(self, inputs: dict[str, Array]) -> Outputs:
        """Run onnxruntime (its errors propagate), then monitoring (whose errors do not)."""
        start = time.perf_counter()
        outputs = self._run(inputs)
        self._observe(inputs, outputs, time.perf_counter() - start)
        return outputs

    def _execute(self, batch: list[_Job]) -> list[Outputs | BaseException]:
        """Inference thread: run the merged batch, split it back; isolate failures."""
        try:
            if len(batch) == 1:
                try:
                    return [self._run_observed(batch[0].inputs)]
                except Exception as exc:  # onnxruntime raises its own untyped exceptions
                    message = f"onnxruntime rejected the input: {_first_line(exc)}"
                    return [InferenceFailedError(message)]
            names = list(batch[0].inputs)
            merged = {n: np.concatenate([j.inputs[n] for j in batch]) for n in names}
            start = time.perf_counter()
            try:
                outputs = self._run(merged)
            except Exception:  # retry one by one: only the culprit fails
                return self._execute_each(batch)
            total = sum(j.rows for j in batch)
            if any(a.ndim == 0 or a.shape[0] != total for a in outputs.values()):
                # an output whose first dimension is not the batch cannot be split per request
                return self._execute_each(batch)
            self._observe(merged, outputs, time.perf_counter() - start)
            results: list[Outputs | BaseException] = []
            start = 0
            for job in batch:
                stop = start + job.rows
                results.append({n: a[start:stop] for n, a in outputs.items()})
                start = stop
            return results
        except Exception as exc:  # a bug here must fail these requests, not the thread
            log.exception("batch execution failed")
            return [exc] * len(batch)

    def _execute_each(self, batch: list[_Job]) -> list[Outputs | BaseException]:
        results: list[Outputs | BaseException] = []
        for job in batch:
            results.extend(self._execute([job]))
        return results
