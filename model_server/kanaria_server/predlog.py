"""Sampled prediction log: JSON lines for retraining and debugging.

Each sampled request becomes one line with its request id, model, version,
inputs (or a summary when a tensor exceeds the size cap), outputs and latency.
Lines are written by a background thread, so a slow disk never stalls a request;
the log is flushed on shutdown.
"""

from __future__ import annotations

import queue
import random
import sys
import threading
import time
from typing import IO, Any

import numpy as np
import orjson

from kanaria.review.summary import describe

__all__ = ["PredictionLog", "describe"]

Array = np.ndarray[Any, Any]


class PredictionLog:
    """Writes a sampled fraction of predictions as JSON lines from a background thread."""

    def __init__(self, target: str, rate: float, max_values: int) -> None:
        self.rate = rate
        self.max_values = max_values
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._stream: IO[bytes] = (
            sys.stdout.buffer if target == "-" else open(target, "ab")  # noqa: SIM115
        )
        self._owns_stream = target != "-"
        self._thread = threading.Thread(target=self._write, name="prediction-log", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        return self.rate >= 1 or (self.rate > 0 and random.random() < self.rate)

    def log(
        self,
        request_id: str,
        model: str,
        version: str,
        inputs: dict[str, Array],
        outputs: dict[str, Array],
        latency_s: float,
    ) -> None:
        record = {
            "time": time.time(),
            "id": request_id,
            "model": model,
            "version": version,
            "inputs": {n: describe(a, self.max_values) for n, a in inputs.items()},
            "outputs": {n: describe(a, self.max_values) for n, a in outputs.items()},
            "latency_ms": round(latency_s * 1000, 3),
        }
        self._queue.put(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def _write(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                break
            self._stream.write(line)
            if self._queue.empty():
                self._stream.flush()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._stream.flush()
        if self._owns_stream:
            self._stream.close()
