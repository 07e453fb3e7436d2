"""The mirror hand-off without a router: the outstanding bound, the worker process, its wire.

The router checks :meth:`Mirrorer.full` before building a copy (a slow shadow
makes every request's copy a drop), so a full hand-off must say so and every
copy offered past it must still be counted as dropped. Copies go to a real
mirror worker process; the shadow here is a closed port, so every copy that
reaches the worker fails fast and is reported.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from kanaria_router.metrics import RouterMetrics
from kanaria_router.mirror import Mirrorer, MirrorJob
from kanaria_router.mirror_wire import (
    HEADER,
    Copy,
    Tally,
    decode_copy,
    encode_copy,
    frame_lengths,
    parse_report,
)
from multidict import CIMultiDict

from kanaria import metric_names as mn
from kanaria.routes import Comparison
from tests.support import procs


def _job(request_id: str, url: str = "http://127.0.0.1:9/v2/models/m/infer") -> MirrorJob:
    return MirrorJob(
        model="m",
        shadow="s",
        url=url,
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


async def _until(condition: object, what: str, timeout: float = 20.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_without_a_worker_every_copy_is_dropped_and_counted() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        mirror = Mirrorer(metrics, 2, 1, 1.0, 0)  # never started
        assert mirror.full()
        for i in range(5):
            mirror.offer(_job(str(i)))
        assert _mirror_count(metrics, "dropped") == 5
        assert mirror.total_outstanding == 0

    asyncio.run(scenario())


def test_the_worker_reports_every_copy_and_the_bound_holds() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        mirror = Mirrorer(metrics, 2, 1, 1.0, 0)
        await mirror.start()
        try:
            assert mirror.running
            # by default copies run at nice 19: what clients leave plus a small share
            worker = _worker_pid(os.getpid())
            assert os.sched_getscheduler(worker) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, worker) == 19
            # the worker's CPU and memory are exported with the router's metrics
            exposed = _worker_samples(metrics)
            assert set(exposed) == {mn.ROUTER_MIRROR_WORKER_CPU, mn.ROUTER_MIRROR_WORKER_MEMORY}
            assert exposed[mn.ROUTER_MIRROR_WORKER_CPU] >= 0
            assert exposed[mn.ROUTER_MIRROR_WORKER_MEMORY] > 1_000_000  # an interpreter
            assert not mirror.full()
            # one loop pass: nothing is flushed or reported before the 5 offers
            for i in range(5):
                mirror.offer(_job(str(i), f"http://127.0.0.1:{procs.free_port()}/infer"))
            assert mirror.total_outstanding == 3  # queue_size 2 + concurrency 1
            assert mirror.full()
            assert _mirror_count(metrics, "dropped") == 2
            # the closed port refuses: each handed-over copy comes back as failed
            await _until(lambda: _mirror_count(metrics, "failed") == 3, "3 failed copies")
            assert mirror.total_outstanding == 0
            assert not mirror.full()
            assert _mirror_count(metrics, "sent") == 0
        finally:
            await mirror.stop()
        assert not mirror.running
        assert _worker_samples(metrics) == {}  # no worker, no series

    asyncio.run(scenario())


def test_copies_offered_while_the_worker_starts_are_held_within_both_bounds() -> None:
    """The worker starts in the background (a reload added the first mirror): copies
    offered meanwhile are held, up to the same count and byte bounds, and handed over
    once it is ready; only those past the bounds are dropped."""

    async def scenario() -> None:
        url = f"http://127.0.0.1:{procs.free_port()}/infer"  # refuses: each copy fails fast
        by_count = RouterMetrics()
        mirror = Mirrorer(by_count, 3, 1, 1.0, 0, priority="normal")
        by_bytes = RouterMetrics()
        heavy = Mirrorer(by_bytes, 100, 1, 1.0, 0, priority="normal", max_bytes=250)
        try:
            for m in (mirror, heavy):
                m.ensure_started()
                assert not m.running
                assert not m.full()
            for i in range(6):
                mirror.offer(_job(str(i), url))
                big = _job(str(i), url)
                heavy.offer(MirrorJob(**{**big.__dict__, "body": b"x" * 98}))  # 100 bytes
            assert not mirror.running  # all offered before the worker could be ready
            assert mirror.total_outstanding == 4  # queue_size 3 + concurrency 1
            assert _mirror_count(by_count, "dropped") == 2
            assert heavy.total_outstanding == 2  # 2 x 100 bytes fit in 250
            assert heavy.outstanding_bytes == 200
            assert _mirror_count(by_bytes, "dropped") == 4
            # held, not lost: every held copy reaches the worker and is reported
            await _until(lambda: _mirror_count(by_count, "failed") == 4, "4 held copies sent")
            await _until(lambda: _mirror_count(by_bytes, "failed") == 2, "2 held copies sent")
            assert mirror.running
            assert mirror.total_outstanding == heavy.total_outstanding == 0
            assert heavy.outstanding_bytes == 0
            assert _mirror_count(by_count, "dropped") == 2
            assert _mirror_count(by_bytes, "dropped") == 4
        finally:
            await mirror.stop()
            await heavy.stop()

    asyncio.run(scenario())


def test_copies_held_for_a_worker_that_cannot_start_are_dropped_and_counted() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        mirror = Mirrorer(metrics, 10, 1, 1.0, 0, priority="normal")
        mirror.command = [sys.executable, "-c", "print('not a mirror worker')"]
        mirror.ensure_started()
        for i in range(3):
            mirror.offer(_job(str(i)))
        assert mirror.total_outstanding == 3
        await _until(lambda: _mirror_count(metrics, "dropped") == 3, "the held copies counted")
        assert mirror.total_outstanding == 0
        assert mirror.outstanding_bytes == 0
        await mirror.stop()

    asyncio.run(scenario())


def test_large_copies_are_bounded_by_bytes_too() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        mirror = Mirrorer(metrics, 100, 1, 1.0, 0, priority="normal", max_bytes=100)
        await mirror.start()
        try:
            url = f"http://127.0.0.1:{procs.free_port()}/infer"

            def big(i: int, size: int) -> MirrorJob:
                job = _job(str(i), url)
                return MirrorJob(**{**job.__dict__, "body": b"x" * size})

            mirror.offer(big(0, 500))  # larger than the bound, but nothing is outstanding
            mirror.offer(big(1, 10))  # would pass the bound: dropped
            assert mirror.total_outstanding == 1
            assert mirror.full()
            assert _mirror_count(metrics, "dropped") == 1
            await _until(lambda: _mirror_count(metrics, "failed") == 1, "the copy reported")
            assert mirror.outstanding_bytes == 0  # its size came back with the report
            for i in range(2, 6):
                mirror.offer(big(i, 40))  # 42 bytes each (primary body b"{}"): two fit
            assert mirror.total_outstanding == 2
            assert _mirror_count(metrics, "dropped") == 3
        finally:
            await mirror.stop()

    asyncio.run(scenario())


def test_a_killed_worker_loses_only_its_copies_counted_and_is_replaced() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        mirror = Mirrorer(metrics, 10, 1, 30.0, 0, priority="normal")
        await mirror.start()
        try:
            hold = procs.free_port()
            held: list[asyncio.StreamWriter] = []  # connections kept open, never answered

            def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                held.append(writer)

            server = await asyncio.start_server(accept, "127.0.0.1", hold)
            try:
                for i in range(4):  # a shadow that accepts and never answers holds them
                    mirror.offer(_job(str(i), f"http://127.0.0.1:{hold}/infer"))
                assert mirror.total_outstanding == 4
                # the worker has the copies once it is sending the first one to the shadow
                await _until(lambda: len(held) >= 1, "the worker's first copy at the shadow")
                assert mirror.total_outstanding == 4
                pid = _worker_pid(os.getpid())
                os.kill(pid, signal.SIGKILL)
                await _until(lambda: _mirror_count(metrics, "dropped") == 4, "4 lost copies")
                assert mirror.total_outstanding == 0
                await _until(lambda: mirror.running, "a new worker")
                replacement = _worker_pid(os.getpid())
                assert replacement != pid
                assert os.sched_getscheduler(replacement) == os.SCHED_OTHER
            finally:
                server.close()
        finally:
            await mirror.stop()

    asyncio.run(scenario())


def test_these_tests_wait_on_conditions_not_on_time() -> None:
    """A sleep is no synchronisation: on a loaded machine it is too short, elsewhere
    it wastes time. Only ``_until`` sleeps, between two checks of its condition."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    sleeping = [
        (function.name, node.lineno)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "sleep"
    ]
    assert {name for name, _ in sleeping} <= {"_until"}, sleeping


def _worker_samples(metrics: RouterMetrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name.startswith("kanaria_router_mirror_worker_")
    }


def _worker_pid(parent: int) -> int:
    workers = procs.children(parent, "kanaria_router.mirror_worker")
    assert len(workers) == 1, workers
    return workers[0]


def test_outcome_counter_children_are_cached_on_the_labelled_series() -> None:
    metrics = RouterMetrics()
    mirror = Mirrorer(metrics, 1, 1, 1.0, 0)
    for _ in range(3):
        mirror.count("m", "s", "sent")
    mirror.count("m", "s", "failed", 2)
    assert _mirror_count(metrics, "sent") == 3
    assert _mirror_count(metrics, "failed") == 2
    assert _mirror_count(metrics, "dropped") == 0


# --- the wire format ------------------------------------------------------------------


def _copy(body: bytes = b'{"inputs": []}', primary: bytes = b"\x00\xffbinary") -> Copy:
    return Copy(
        model="fraud",
        shadow="v3",
        url="http://127.0.0.1:1/v2/models/fraud/infer",
        baseline="v1",
        request_id="r-1",
        headers=[("content-type", "application/json"), ("x-request-id", "r-1")],
        body=body,
        primary_status=200,
        primary_body=primary,
        rtol=1e-3,
        atol=1e-6,
        log_percent=50.0,
    )


@pytest.mark.parametrize("body", [b"", b"{}", bytes(range(256)) * 40])
def test_a_copy_survives_the_frame_bytes_for_bytes(body: bytes) -> None:
    frame = encode_copy(_copy(body))
    meta_len, body_len, primary_len = frame_lengths(frame[: HEADER.size])
    rest = frame[HEADER.size :]
    assert len(rest) == meta_len + body_len + primary_len
    meta, rest = rest[:meta_len], rest[meta_len:]
    decoded = decode_copy(meta, rest[:body_len], rest[body_len:])
    assert decoded == _copy(body)


def test_corrupt_frames_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="frame header"):
        frame_lengths(HEADER.pack(0, 1, 1))
    with pytest.raises(ValueError, match="frame header"):
        frame_lengths(HEADER.pack(10, 2**31, 0))
    with pytest.raises(ValueError, match="metadata"):
        decode_copy(b"[1, 2]", b"", b"")
    with pytest.raises(ValueError, match="metadata"):
        decode_copy(b"not json", b"", b"")


def test_a_report_round_trips_and_a_bad_one_is_refused() -> None:
    tally = Tally.empty()
    assert not tally
    tally.outcome("m", "s", "sent", 10)
    tally.outcome("m", "s", "sent", 20)
    tally.outcome("m", "s", "failed", 5)
    tally.comparison("m", "s", "v1", agree=True)
    tally.comparison("m", "s", "v1", agree=False)
    assert tally
    line = tally.to_line()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert parse_report(line) == tally
    assert parse_report(line).size == 35
    for bad in (
        b"{}",
        b'{"outcomes": [["m", "s", "exploded", 1]], "comparisons": [], "size": 0}',
        b'{"outcomes": [["m", "s", "sent", 0]], "comparisons": [], "size": 0}',
        b'{"outcomes": [], "comparisons": [["m", "s", "v1", "maybe", 1]], "size": 0}',
        b'{"outcomes": [], "comparisons": [], "size": -1}',
        b'{"outcomes": [], "comparisons": []}',
        b"garbage",
    ):
        with pytest.raises(ValueError, match="corrupt mirror report"):
            parse_report(bad)


def test_a_refused_idle_priority_falls_back_to_nice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A seccomp profile may refuse SCHED_IDLE: the worker runs at nice 19 instead."""
    from kanaria_router import mirror_worker

    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    niced: list[int] = []

    def nice(n: int) -> int:
        niced.append(n)
        return n

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(os, "nice", nice)
    mirror_worker.lower_priority("idle")
    assert niced == [19]
    assert "SCHED_IDLE refused" in caplog.text
    mirror_worker.lower_priority("normal")
    assert niced == [19]  # normal changes nothing
