"""Synthetic client traffic for the demo and the integration tests.

A few worker threads send Open Inference Protocol (V2) requests through the
router at a steady rate, each request carrying a user id from a fixed pool (so
sticky routing has something to stick to), and count every outcome. The counts
are the client's view of a rollout: "zero failed requests caused by the rollout"
is checked against them.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

INJECTED_MARK = "injected failure"
"""Text of the model server's deliberate failures (``kanaria serve-model --chaos-error-rate``)."""


@dataclass
class TrafficStats:
    """What the clients saw (thread-safe counters)."""

    ok: int = 0
    failed: int = 0
    by_code: Counter[str] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Failed requests by reason (status code or exception class), for the report."""
    injected: int = 0
    """Of the failed, answers the model server failed on purpose (``--chaos-error-rate``):
    the faulty model's doing, not the rollout's."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, code: str, version: str | None, ok: bool, injected: bool = False) -> None:
        with self.lock:
            self.injected += injected
            self.by_code[code] += 1
            if ok:
                self.ok += 1
                if version:
                    self.by_version[version] += 1
            else:
                self.failed += 1
                self.errors[code] += 1

    def snapshot(self) -> tuple[int, int, dict[str, int]]:
        """``(ok, failed, {version: ok count})`` right now."""
        with self.lock:
            return self.ok, self.failed, dict(self.by_version)

    def not_injected_failures(self) -> int:
        """Failed requests that no model failed on purpose: what a rollout must not cause."""
        with self.lock:
            return self.failed - self.injected


def infer_body(width: int, rng: random.Random, shift: float = 0.0) -> dict[str, object]:
    """One V2 infer request with a single row of ``width`` features."""
    row = [rng.gauss(shift, 1.0) for _ in range(width)]
    return {"inputs": [{"name": "input", "shape": [1, width], "datatype": "FP32", "data": row}]}


class TrafficGenerator:
    """Steady V2 traffic at ``rate`` requests/second against ``url`` (the router)."""

    def __init__(
        self,
        url: str,
        model: str,
        width: int,
        rate: float = 20.0,
        workers: int = 4,
        users: int = 200,
        sticky_header: str = "x-user-id",
        seed: int = 0,
        timeout_s: float = 10.0,
        shift: float = 0.0,
    ) -> None:
        self.endpoint = f"{url.rstrip('/')}/v2/models/{model}/infer"
        self.width = width
        self.rate = rate
        self.workers = workers
        self.users = users
        self.sticky_header = sticky_header
        self.seed = seed
        self.timeout_s = timeout_s
        self.shift = shift
        """Mean of the generated features (0: the N(0, 1) the demo models expect); set
        it to simulate input drift."""
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> TrafficGenerator:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, args=(i,), name=f"traffic-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def pause(self) -> None:
        """Stop sending (threads stay; :meth:`resume` continues)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 1)

    def _work(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        period = self.workers / self.rate if self.rate > 0 else 1.0
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        with httpx.Client(timeout=self.timeout_s, limits=limits) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                if self._paused.is_set():
                    self._stop.wait(0.1)
                    next_at = time.monotonic()
                    continue
                user = f"user-{rng.randrange(self.users)}"
                self._send(client, rng, user)
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()

    def _send(self, client: httpx.Client, rng: random.Random, user: str) -> None:
        try:
            response = client.post(
                self.endpoint,
                json=infer_body(self.width, rng, self.shift),
                headers={self.sticky_header: user},
            )
        except httpx.HTTPError as exc:
            self.stats.record(type(exc).__name__, None, ok=False)
            return
        version: str | None = None
        if response.status_code == 200:
            try:
                data = response.json()
                version = str(data.get("model_version") or "") or None
            except ValueError:
                version = None
        injected = response.status_code == 500 and INJECTED_MARK in response.text
        self.stats.record(
            str(response.status_code), version, ok=response.status_code == 200, injected=injected
        )
