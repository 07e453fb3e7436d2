"""The review path against a real Label Studio, and labels back into a real Kanaria.

Label Studio is the one scripts/install-label-studio.sh installs, started on
127.0.0.1 by tests/support/labelstudio.py. Predictions are real: a generated
classifier served by ``kanaria serve-model`` behind ``kanaria route``; review
cases are built from the router's answers, sent to Label Studio by the sender,
annotated through Label Studio's API as a reviewer's browser would, and pulled
back by the puller, which posts them to the router's feedback API; the model
server then counts them correct or incorrect against what it predicted.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from kanaria.modelgen import mlp_classifier
from kanaria.review import (
    LabelPuller,
    LabelStudioSink,
    ReviewCase,
    ReviewMetrics,
    ReviewSender,
    case_from_v2,
)
from kanaria.review.labelstudio import Connection, LabelStudioClient
from kanaria.review.sender import Retry
from tests.kanaria_router.conftest import Backend, routes
from tests.kanaria_server.conftest import metric_value
from tests.support import labelstudio as ls
from tests.support import procs

CLASSES = ["legit", "fraud", "unsure"]
LAYERS = (4, 16, len(CLASSES))
MODEL = "fraud"


@dataclass
class Kanaria:
    """A model server (v1) behind a router: where predictions and labels go."""

    router_url: str
    server_url: str
    _ids: Iterator[int]

    def predict(self, rows: int = 1) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """One prediction through the router: its request id, request and answer."""
        request_id = f"req-{next(self._ids)}-{uuid.uuid4().hex[:6]}"
        x = np.random.default_rng(abs(hash(request_id)) % 2**32).normal(0, 2, (rows, LAYERS[0]))
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, LAYERS[0]],
                            "data": x.round(4).ravel().tolist()}]}  # fmt: skip
        answer = httpx.post(
            f"{self.router_url}/v2/models/{MODEL}/infer",
            json=body,
            headers={"x-request-id": request_id},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return request_id, body, answer.json()

    def feedback_counts(self) -> dict[str, float]:
        text = httpx.get(f"{self.server_url}/metrics", timeout=10).text
        return {
            r: metric_value(text, "kanaria_feedback_total", result=r)
            for r in ("correct", "incorrect", "unknown")
        }


@pytest.fixture(scope="module")
def kanaria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kanaria]:
    root = tmp_path_factory.mktemp("review-kanaria")
    model = mlp_classifier(root / "model.onnx", LAYERS, seed=5)
    server_port, router_port = procs.free_port(), procs.free_port()
    server = procs.start(
        procs.kanaria(
            "serve-model", "--model", str(model), "--name", MODEL, "--version", "v1",
            "--port", str(server_port), "--host", "127.0.0.1",
        ),
        root / "logs",
        "serve-model",
    )  # fmt: skip
    router: procs.Process | None = None
    try:
        server.wait_http(f"http://127.0.0.1:{server_port}/v2/health/ready", timeout=120)
        config = root / "routes.yaml"
        backend = Backend("v1", server_port, server)
        config.write_text(routes({MODEL: {"versions": {"v1": (backend, 100)}}}))
        router = procs.start(
            procs.kanaria(
                "route", "--config", str(config), "--port", str(router_port),
                "--host", "127.0.0.1",
            ),
            root / "logs",
            "router",
        )  # fmt: skip
        router.wait_http(f"http://127.0.0.1:{router_port}/v2/health/ready", timeout=60)
        yield Kanaria(
            f"http://127.0.0.1:{router_port}",
            f"http://127.0.0.1:{server_port}",
            itertools.count(),
        )
    finally:
        if router is not None:
            router.stop()
        server.stop()


def review_case(request_id: str, request: dict[str, Any], answer: dict[str, Any]) -> ReviewCase:
    """The case the serving path would build from a request and the answer it got."""
    [probs] = [o for o in answer["outputs"] if o["datatype"].startswith("FP")]
    scores = np.asarray(probs["data"], dtype=np.float64).reshape(probs["shape"])
    return case_from_v2(
        request_id, MODEL, answer.get("model_version") or "v1", datetime.now(UTC),
        request["inputs"], answer["outputs"],
        confidence=float(scores.max(axis=1).min()),
        classes=[int(c) for c in scores.argmax(axis=1)],
    )  # fmt: skip


def send(studio: ls.LabelStudio, title: str, cases: list[ReviewCase]) -> int:
    """Offer ``cases`` to a Label Studio sink, wait until the sender delivered them;
    the review project's id."""
    sink = LabelStudioSink(studio.connection(), MODEL, CLASSES, title=title)

    async def scenario() -> int:
        sender = ReviewSender(
            sink, MODEL, ReviewMetrics(CollectorRegistry()), retry=Retry(3, 0.05, jitter=0)
        )
        sender.start()
        for c in cases:
            assert sender.offer(c)
        await sender.drained()
        await sender.aclose()
        assert (sender.counts.sent, sender.counts.failed) == (len(cases), 0)
        assert sink.project is not None
        return sink.project

    return asyncio.run(scenario())


def project_tasks(studio: ls.LabelStudio, project: int) -> list[dict[str, Any]]:
    """Every task of ``project`` with its predictions and annotations, as the UI lists them."""
    tasks: list[dict[str, Any]] = []
    for page in itertools.count(1):
        answer = studio.api(
            "GET", "/api/tasks",
            params={"project": project, "fields": "all", "page": page, "page_size": 100},
        )  # fmt: skip
        if answer.status_code == 404:  # past the last page
            break
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        batch = doc["tasks"] if isinstance(doc, dict) else doc
        tasks.extend(batch)
        if len(batch) < 100:
            break
    return tasks


def by_request(tasks: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(t["data"]["request_id"], t["data"]["row"]): t for t in tasks}


def annotate(studio: ls.LabelStudio, task_id: int, choice: str | None) -> None:
    """What a reviewer's submit does: an annotation with one choice (None: skip the task)."""
    body: dict[str, Any] = {"result": [], "was_cancelled": True}
    if choice is not None:
        body = {
            "result": [{"from_name": "label", "to_name": "case", "type": "choices",
                        "value": {"choices": [choice]}}],
            "was_cancelled": False,
        }  # fmt: skip
    answer = studio.api("POST", f"/api/tasks/{task_id}/annotations", json=body)
    assert answer.status_code == 201, answer.text


def title() -> str:
    return f"Kanaria review test {uuid.uuid4().hex[:8]}"


def test_cases_become_tasks_with_the_models_answer_pre_filled(
    label_studio: ls.LabelStudio, kanaria: Kanaria
) -> None:
    name = title()
    predictions = [kanaria.predict() for _ in range(3)]
    cases = [review_case(*p) for p in predictions]
    project_id = send(label_studio, name, cases)

    project = label_studio.api("GET", f"/api/projects/{project_id}").json()
    assert project["title"] == name
    assert all(f'value="{c}"' in project["label_config"] for c in CLASSES)

    tasks = by_request(project_tasks(label_studio, project_id))
    assert set(tasks) == {(c.requestId, 0) for c in cases}
    for c in cases:
        task = tasks[(c.requestId, 0)]
        assert task["data"]["version"] == "v1"
        assert task["data"]["inputs"] == c.as_json()["inputs"]
        assert f"The model suggests: {CLASSES[c.classes[0]]}" in task["data"]["text"]
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "v1"
        assert prediction["score"] == pytest.approx(c.confidence)
        [result] = prediction["result"]
        assert result["value"]["choices"] == [CLASSES[c.classes[0]]]

    # A second sink (a restarted router) finds the project instead of making another.
    again = LabelStudioSink(label_studio.connection(), MODEL, CLASSES, title=name)

    async def ensure() -> int:
        try:
            return await again.ensure_project()
        finally:
            await again.aclose()

    assert asyncio.run(ensure()) == project_id


def test_reviewers_annotations_come_back_as_labels_through_the_feedback_api(
    label_studio: ls.LabelStudio, kanaria: Kanaria, tmp_path: Path
) -> None:
    agree, disagree, skipped = (kanaria.predict() for _ in range(3))
    two_rows = kanaria.predict(rows=2)
    cases = {p[0]: review_case(*p) for p in (agree, disagree, skipped, two_rows)}
    project_id = send(label_studio, title(), list(cases.values()))
    tasks = by_request(project_tasks(label_studio, project_id))

    def suggested(request_id: str, row: int = 0) -> int:
        return cases[request_id].classes[row]

    annotate(label_studio, tasks[(agree[0], 0)]["id"], CLASSES[suggested(agree[0])])
    other = (suggested(disagree[0]) + 1) % len(CLASSES)
    annotate(label_studio, tasks[(disagree[0], 0)]["id"], CLASSES[other])
    annotate(label_studio, tasks[(skipped[0], 0)]["id"], None)
    annotate(label_studio, tasks[(two_rows[0], 0)]["id"], CLASSES[suggested(two_rows[0], 0)])

    registry = CollectorRegistry()
    metrics = ReviewMetrics(registry)
    state = tmp_path / "labels-sent.json"
    before = kanaria.feedback_counts()

    async def pull() -> Any:
        puller = LabelPuller(
            LabelStudioClient(label_studio.connection()), project_id, MODEL, CLASSES,
            kanaria.router_url, metrics, state_path=state,
        )  # fmt: skip
        try:
            return await puller.pull_once()
        finally:
            await puller.client.aclose()
            await puller.aclose()

    first = asyncio.run(pull())
    # Two single-row decisions sent; the skipped task is no decision; the two-row
    # request waits for its second row.
    assert (first.accepted, first.unknown, first.failed, first.pending) == (2, 0, 0, 1)
    after = kanaria.feedback_counts()
    assert after["correct"] - before["correct"] == 1
    assert after["incorrect"] - before["incorrect"] == 1

    annotate(label_studio, tasks[(two_rows[0], 1)]["id"], CLASSES[suggested(two_rows[0], 1)])
    second = asyncio.run(pull())  # a new puller: the state file says what was sent
    assert (second.accepted, second.pending) == (1, 0)
    final = kanaria.feedback_counts()
    assert final["correct"] - before["correct"] == 3  # both rows agreed
    assert final["unknown"] == before["unknown"]  # nothing was sent twice

    assert asyncio.run(pull()).accepted == 0
    labels = {"model": MODEL, "source": "label-studio", "result": "accepted"}
    assert registry.get_sample_value("kanaria_review_labels_total", labels) == 3


def test_a_label_studio_left_by_a_crashed_run_is_stopped_by_pid(tmp_path: Path) -> None:
    """The record of a Label Studio whose test process died leads the next start to it.
    A stand-in process carries the data dir in its command line, as Label Studio does."""
    data_dir = tmp_path / "kanaria-ls-left"
    data_dir.mkdir()
    owner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    left = procs.start(
        # it must outlive the reaping: reading stdin would end at once where stdin is
        # /dev/null (as under CI), and a zombie's command line is empty
        [sys.executable, "-c", "import time; time.sleep(300)", "--data-dir", str(data_dir)],
        tmp_path,
        "left-behind",
    )
    procs.wait_until(  # Popen returns before the child has exec'd its command line
        lambda: str(data_dir).encode() in Path(f"/proc/{left.pid}/cmdline").read_bytes(),
        30,
        "the stand-in's command line",
    )
    ls.RECORDS.mkdir(parents=True, exist_ok=True)
    record = ls.RECORDS / f"{left.pid}.json"
    record.write_text(
        f'{{"pid": {left.pid}, "owner": {owner.stdout.strip()}, "data_dir": "{data_dir}"}}'
    )
    mine = ls.RECORDS / f"{os.getpid()}-mine.json"  # a live owner: not touched
    mine.write_text(f'{{"pid": {left.pid}, "owner": {os.getpid()}, "data_dir": "{data_dir}"}}')
    try:
        assert left.pid in ls.reap_leftovers()
        left.popen.wait(30)
        assert not left.alive()
        assert not record.exists()
        assert not data_dir.exists()
        assert mine.exists()
    finally:
        mine.unlink(missing_ok=True)
        left.stop()


def test_a_token_label_studio_refuses_fails_the_batch_without_retrying(
    label_studio: ls.LabelStudio,
) -> None:
    sink = LabelStudioSink(
        Connection(label_studio.url, "not-a-token"), MODEL, CLASSES, title=title()
    )
    registry = CollectorRegistry()

    async def scenario() -> None:
        sender = ReviewSender(sink, MODEL, ReviewMetrics(registry), retry=Retry(3, 0.01))
        sender.start()
        sender.offer(ReviewCase(requestId="r", model=MODEL, version="v1", time=datetime.now(UTC)))
        await sender.drained()
        await sender.aclose()
        assert (sender.counts.failed, sender.counts.retries) == (1, 0)

    asyncio.run(scenario())
    labels = {"model": MODEL, "version": "v1", "sink": "label-studio", "outcome": "failed"}
    assert registry.get_sample_value("kanaria_review_cases_total", labels) == 1


def test_a_label_the_feedback_api_could_not_take_is_sent_at_the_next_pull(
    label_studio: ls.LabelStudio, kanaria: Kanaria
) -> None:
    request_id, request, answer = kanaria.predict()
    c = review_case(request_id, request, answer)
    project_id = send(label_studio, title(), [c])
    [task] = project_tasks(label_studio, project_id)
    annotate(label_studio, task["id"], CLASSES[c.classes[0]])
    before = kanaria.feedback_counts()

    async def scenario() -> None:
        client = LabelStudioClient(label_studio.connection())
        nowhere = f"http://127.0.0.1:{procs.free_port()}"  # nothing listens there
        metrics = ReviewMetrics(CollectorRegistry())
        puller = LabelPuller(client, project_id, MODEL, CLASSES, nowhere, metrics)
        try:
            down = await puller.pull_once()
            assert (down.accepted, down.failed) == (0, 1)
            puller.feedback_url = kanaria.router_url  # the feedback API is back
            up = await puller.pull_once()
            assert (up.accepted, up.failed) == (1, 0)
        finally:
            await client.aclose()
            await puller.aclose()

    asyncio.run(scenario())
    assert kanaria.feedback_counts()["correct"] == before["correct"] + 1
