"""The mirror queue's bookkeeping without a network: drops and cached outcome counters.

The router checks :meth:`Mirrorer.full` before building a copy (a slow shadow
makes every request's copy a drop), so a full queue must say so and every copy
offered past it must still be counted as dropped, on the same series that
``labels()`` reads.
"""

from __future__ import annotations

import asyncio

from kanaria_router.metrics import RouterMetrics
from kanaria_router.mirror import Mirrorer, MirrorJob
from multidict import CIMultiDict

from kanaria import metric_names as mn
from kanaria.routes import Comparison


def _job(request_id: str) -> MirrorJob:
    return MirrorJob(
        model="m",
        shadow="s",
        url="http://127.0.0.1:9/v2/models/m/infer",
        baseline="v1",
        headers=CIMultiDict({"x-request-id": request_id}),
        body=b"{}",
        request_id=request_id,
        primary_status=200,
        primary_body=b"{}",
        comparison=Comparison(),
    )


def _mirror_count(metrics: RouterMetrics, outcome: str) -> float:
    labels = {"model": "m", "version": "s", "outcome": outcome}
    value = metrics.registry.get_sample_value(mn.ROUTER_MIRROR, labels)
    return value if value is not None else 0.0


def test_full_queue_drops_and_counts_every_copy_offered() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        mirror = Mirrorer(metrics, 2, 1, 1.0, 0)  # workers not started: nothing drains
        assert not mirror.full()
        for i in range(5):
            mirror.offer(_job(str(i)))
        assert mirror.full()
        assert mirror.queue.qsize() == 2
        assert _mirror_count(metrics, "dropped") == 3

    asyncio.run(scenario())


def test_outcome_counter_children_are_cached_on_the_labelled_series() -> None:
    metrics = RouterMetrics()
    mirror = Mirrorer(metrics, 1, 1, 1.0, 0)
    for _ in range(3):
        mirror.count("m", "s", "sent")
    mirror.count("m", "s", "failed")
    assert _mirror_count(metrics, "sent") == 3
    assert _mirror_count(metrics, "failed") == 1
    assert _mirror_count(metrics, "dropped") == 0
