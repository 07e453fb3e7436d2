"""Dynamic batching: merge concurrent infer requests into one onnxruntime call.

Requests wait in an asyncio queue; one collector coroutine takes what is queued
(up to ``max_batch_size`` rows, optionally waiting ``max_batch_delay`` for more),
and hands the merged batch to a single inference thread, so the event loop is
never blocked by onnxruntime and onnxruntime is never called from two threads.
While a batch runs, new requests queue up and form the next one: under load,
batches grow by themselves; at low load, a request runs alone at once.

A batch that fails is retried one request at a time, so one bad request never
fails the others that happened to share its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from kanaria_server.errors import InferenceFailedError, NotReadyError

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
    """Queue + collector + one inference thread around a model's ``run`` function."""

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
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="batcher")

    async def close(self) -> None:
        """Finish every queued request, then stop the collector and the thread."""
        self._closing = True
        while self._pending:
            self._wakeup.set()
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, inputs: dict[str, Array], rows: int) -> Outputs:
        """Queue one validated request and wait for its own rows of every output."""
        if self._closing:
            raise NotReadyError("server is shutting down")
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(inputs, rows, _key(inputs), future, time.perf_counter()))
        self._wakeup.set()
        return await future

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

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take()
            if (
                self._batching
                and self._delay > 0
                and sum(j.rows for j in batch) < self._max_rows
                and not self._closing
            ):
                await asyncio.sleep(self._delay)
                self._fill(batch)
            now = time.perf_counter()
            if self._observe_queue is not None:
                for job in batch:
                    self._observe_queue(now - job.enqueued)
            live = [j for j in batch if not j.future.cancelled()]
            if not live:
                continue
            results = await loop.run_in_executor(self._executor, self._execute, live)
            for job, result in zip(live, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _run_observed(self, inputs: dict[str, Array]) -> Outputs:
        start = time.perf_counter()
        outputs = self._run(inputs)
        if self._observe_batch is not None:
            self._observe_batch(inputs, outputs, time.perf_counter() - start)
        return outputs

    def _execute(self, batch: list[_Job]) -> list[Outputs | BaseException]:
        """Inference thread: run the merged batch, split it back; isolate failures."""
        if len(batch) == 1:
            try:
                return [self._run_observed(batch[0].inputs)]
            except Exception as exc:  # onnxruntime raises its own untyped exceptions
                return [InferenceFailedError(f"onnxruntime rejected the input: {_first_line(exc)}")]
        names = list(batch[0].inputs)
        merged = {n: np.concatenate([j.inputs[n] for j in batch]) for n in names}
        try:
            outputs = self._run_observed(merged)
        except Exception:  # retry one by one: only the culprit fails
            return self._execute_each(batch)
        results: list[Outputs | BaseException] = []
        start = 0
        for job in batch:
            stop = start + job.rows
            results.append({n: a[start:stop] for n, a in outputs.items()})
            start = stop
        return results

    def _execute_each(self, batch: list[_Job]) -> list[Outputs | BaseException]:
        results: list[Outputs | BaseException] = []
        for job in batch:
            results.extend(self._execute([job]))
        return results
