"""The webhook sink and the bounded sender, against a real HTTP receiver on 127.0.0.1.

Counts, not time: a full buffer is proven by what was dropped while a delivery
was provably in flight (the receiver holds it), and ``offer`` not waiting by
its being a plain function that returned for every case while that delivery
still hung. Retries use millisecond backoff so the tests stay short; nothing
asserts on how long anything took.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kanaria.api import Webhook
from kanaria.review import (
    PendingCase,
    ReviewCase,
    ReviewMetrics,
    ReviewSender,
    WebhookSink,
    batch_body,
)
from kanaria.review.sender import Retry
from kanaria.review.webhook import classify
from tests.kanaria.review.receiver import ScriptedReceiver
from tests.support.procs import free_port

FAST = Retry(attempts=5, first_delay_s=0.01, max_delay_s=0.05, jitter=0)
"""Millisecond backoff: the retries are what is tested, not their spacing."""


def case(i: int, version: str = "v1") -> ReviewCase:
    return ReviewCase(
        requestId=f"r{i}",
        model="fraud",
        version=version,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        confidence=0.5,
        classes=[1],
        inputs={"x": [float(i), 2.0]},
        outputs={"probs": [[0.5, 0.5]]},
    )


async def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` on the loop (so the sender's task runs) until True, or fail."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def sender(
    url: str,
    registry: CollectorRegistry,
    retry: Retry = FAST,
    capacity: int = 100,
    batch_size: int = 10,
    headers: dict[str, str] | None = None,
) -> ReviewSender:
    sink = WebhookSink(Webhook(url=url, timeout="10s", headers=headers or {}))
    return ReviewSender(
        sink,
        "fraud",
        ReviewMetrics(registry),
        capacity=capacity,
        batch_size=batch_size,
        retry=retry,
    )


def cases_metric(registry: CollectorRegistry, outcome: str, version: str = "v1") -> float:
    labels = {"model": "fraud", "version": version, "sink": "webhook", "outcome": outcome}
    return registry.get_sample_value("kanaria_review_cases_total", labels) or 0.0


def test_retries_after_failures_then_delivers_the_batch_once() -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        with ScriptedReceiver([503, 500, 429]) as receiver:
            s = sender(receiver.url, registry, headers={"Authorization": "Bearer t"})
            s.start()
            for i in range(3):
                assert s.offer(case(i))
            await s.drained()
            await s.aclose()
            assert len(receiver.arrived) == 4  # three failures, then the one accepted
            assert [c["requestId"] for c in receiver.cases()] == ["r0", "r1", "r2"]
            assert all(h["Authorization"] == "Bearer t" for h in receiver.headers)
            assert receiver.headers[0]["Content-Type"] == "application/json"
            body = receiver.accepted[0]
            assert body["kind"] == "ReviewCases"
            assert body["cases"][0]["kind"] == "ReviewCase"
            assert body["cases"][0]["confidence"] == 0.5
            assert s.counts.sent == 3
            assert s.counts.retries == 3
            assert s.counts.failed == s.counts.dropped == 0

    asyncio.run(scenario())
    assert cases_metric(registry, "sent") == 3
    assert (
        registry.get_sample_value(
            "kanaria_review_delivery_retries_total", {"model": "fraud", "sink": "webhook"}
        )
        == 3
    )


def test_gives_up_after_the_last_attempt_and_goes_on_with_later_cases() -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        with ScriptedReceiver([500, 502, 503]) as receiver:
            s = sender(receiver.url, registry, retry=Retry(3, 0.01, jitter=0))
            s.start()
            s.offer(case(0))
            s.offer(case(1))
            await s.drained()
            assert len(receiver.arrived) == 3  # bounded: three attempts, no fourth
            assert s.counts.failed == 2
            s.offer(case(2))
            await s.drained()
            await s.aclose()
            assert [c["requestId"] for c in receiver.cases()] == ["r2"]
            assert s.counts.sent == 1

    asyncio.run(scenario())
    assert cases_metric(registry, "failed") == 2
    assert cases_metric(registry, "sent") == 1


def test_a_refusal_that_will_not_pass_is_not_retried() -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        with ScriptedReceiver([400]) as receiver:
            s = sender(receiver.url, registry)
            s.start()
            s.offer(case(0))
            await s.drained()
            await s.aclose()
            assert len(receiver.arrived) == 1
            assert (s.counts.failed, s.counts.retries) == (1, 0)

    asyncio.run(scenario())
    assert cases_metric(registry, "failed") == 1


def test_a_receiver_that_is_not_there_is_retried_then_failed() -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        s = sender(f"http://127.0.0.1:{free_port()}/review", registry, Retry(2, 0.01, jitter=0))
        s.start()
        s.offer(case(0, version="v2"))
        await s.drained()
        await s.aclose()
        assert (s.counts.failed, s.counts.retries) == (1, 1)

    asyncio.run(scenario())
    assert cases_metric(registry, "failed", version="v2") == 1


def test_full_buffer_drops_and_counts_and_offer_never_waits() -> None:
    registry = CollectorRegistry()
    capacity, offered = 4, 100

    async def scenario() -> None:
        with ScriptedReceiver() as receiver:
            receiver.hold()
            s = sender(receiver.url, registry, capacity=capacity, batch_size=1)
            s.start()
            assert s.offer(case(0))
            await _until(lambda: len(receiver.arrived) == 1, "the first case in flight")
            # The receiver holds that delivery. offer is a plain function, and all of
            # these calls return without the loop running once: none can have waited
            # for the delivery, which is still hanging when they are done.
            assert not inspect.iscoroutinefunction(s.offer)
            results = [s.offer(case(i)) for i in range(1, offered + 1)]
            assert len(receiver.accepted) == 0
            assert results == [True] * capacity + [False] * (offered - capacity)
            assert s.depth() == capacity
            assert s.counts.dropped == offered - capacity
            assert cases_metric(registry, "dropped") == offered - capacity
            depth = {"model": "fraud", "sink": "webhook"}
            assert registry.get_sample_value("kanaria_review_queue_depth", depth) == capacity
            receiver.release()
            await s.drained()
            assert [c["requestId"] for c in receiver.cases()] == [f"r{i}" for i in range(5)]
            assert registry.get_sample_value("kanaria_review_queue_depth", depth) == 0
            await s.aclose()
            assert registry.get_sample_value("kanaria_review_queue_depth", depth) is None

    asyncio.run(scenario())
    assert cases_metric(registry, "sent") == capacity + 1


def test_close_counts_what_it_could_not_deliver_as_dropped() -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        with ScriptedReceiver() as receiver:
            receiver.hold()
            s = sender(receiver.url, registry, batch_size=1)
            s.start()
            for i in range(3):
                s.offer(case(i))
            await _until(lambda: len(receiver.arrived) == 1, "the first case in flight")
            await s.aclose(timeout_s=0.1)  # the receiver holds on: nothing more gets out
            assert s.counts.dropped == 3  # the one in flight and the two buffered
            assert not s.offer(case(3))  # closed: dropped, counted
            assert s.counts.dropped == 4
            assert s.counts.sent == 0

    asyncio.run(scenario())
    assert cases_metric(registry, "dropped") == 4


def test_retry_delays_grow_and_are_capped() -> None:
    retry = Retry(attempts=10, first_delay_s=0.5, multiplier=2, max_delay_s=3, jitter=0.1)
    assert [retry.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retry.delay(1, rand=0.5) == pytest.approx(0.525)
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, None), (204, None), (400, False), (401, False), (404, False), (408, True),
     (429, True), (500, True), (503, True)],
)  # fmt: skip
def test_what_an_answer_means(status: int, verdict: bool | None) -> None:
    assert classify(status) is verdict


def test_these_tests_wait_on_conditions_not_on_time() -> None:
    """A sleep is no synchronisation. Only ``_until`` sleeps, between two checks."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    sleeping = {
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "sleep"
    }
    assert sleeping <= {"_until"}, sleeping


def pending(i: int, request: bytes | None = None) -> PendingCase:
    """What the router offers for ``case(i)``: the V2 JSON bodies it holds."""
    x = {"name": "x", "shape": [2], "datatype": "FP64", "data": [i, 2]}
    probs = {"name": "probs", "shape": [1, 2], "datatype": "FP32", "data": [0.25, 0.75]}
    return PendingCase(
        f"r{i}", "fraud", "v1", datetime(2026, 1, 1, tzinfo=UTC).timestamp(),
        json.dumps({"inputs": [x]}).encode() if request is None else request,
        json.dumps({"outputs": [probs]}).encode(), confidence="0.5",
    )  # fmt: skip


def doc(c: ReviewCase) -> dict[str, object]:
    body: dict[str, list[dict[str, object]]] = json.loads(batch_body([c]))
    return body["cases"][0]


def test_pending_cases_are_built_on_the_task_and_one_that_cannot_be_fails_alone() -> None:
    """The router offers the bodies it holds (O(1)); the sender builds the cases with
    their batch. A body that is not V2 JSON fails its own case, counted, and the
    others of the batch and later cases go out as cases made whole would."""
    registry = CollectorRegistry()

    async def scenario() -> None:
        with ScriptedReceiver() as receiver:
            s = sender(receiver.url, registry)
            s.start()
            assert s.offer(pending(0))
            assert s.offer(pending(1, b"\x00binary tensors"))
            assert s.offer(pending(2))
            await s.drained()
            assert s.offer(case(3))  # built cases still go as they are
            await s.drained()
            await s.aclose()
            made = [
                case(i).model_copy(update={"outputs": {"probs": [[0.25, 0.75]]}}) for i in (0, 2)
            ]
            assert receiver.cases() == [doc(c) for c in (*made, case(3))]
            assert (s.counts.sent, s.counts.failed) == (3, 1)

    asyncio.run(scenario())
    assert cases_metric(registry, "sent") == 3
    assert cases_metric(registry, "failed") == 1
