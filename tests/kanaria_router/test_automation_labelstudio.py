"""Review answers from the router reach a real Label Studio, and reviewers' choices come
back as agreement by confidence band (issue 13), pulled by the router itself.

The routes document names a Label Studio sink (the token from the router's
environment, never from the routes); the model server behind the router answers in
assist, so every answer is a review case; the router offers each to the sink, which
creates one task per case with the model's class pre-filled. A reviewer's choice,
made through Label Studio's API as the browser would, is pulled back by the router
(its own run of kanaria.review's puller) into its feedback API, and the model server counts
it against its suggestion in the prediction's confidence band.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml

from kanaria.modelgen import mlp_classifier
from tests.kanaria.review.test_labelstudio import annotate, project_tasks
from tests.kanaria_router.automation_support import server_metric
from tests.kanaria_router.conftest import Backend, RouterFactory, model_server
from tests.support import labelstudio as ls
from tests.support.labelstudio import label_studio

__all__ = ["label_studio"]

CLASSES = ["legit", "fraud", "unsure"]
LAYERS = (4, 16, len(CLASSES))
TOKEN_ENV = "KANARIA_TEST_LABEL_STUDIO_TOKEN"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("automation-ls")
    with model_server(mlp_classifier(root / "m.onnx", LAYERS, seed=5), root / "logs") as s:
        yield s


def project_id(studio: ls.LabelStudio, title: str) -> int | None:
    answer = studio.api("GET", "/api/projects", params={"title": title})
    doc = answer.json()
    projects = doc["results"] if isinstance(doc, dict) else doc
    found = [p["id"] for p in projects if p["title"] == title]
    return found[0] if found else None


def test_review_answers_become_tasks_and_choices_come_back_as_agreement(
    label_studio: ls.LabelStudio, router: RouterFactory, server: Backend
) -> None:
    title = f"Kanaria router review {uuid.uuid4().hex[:8]}"
    doc = {
        "models": {
            "fraud": {
                "versions": {
                    "v1": {"url": server.url, "weight": 100, "automation": {"mode": "assist"}}
                },
                "review": {
                    "labelStudio": {
                        "url": label_studio.url,
                        "project": title,
                        "classes": CLASSES,
                        "tokenEnv": TOKEN_ENV,
                    }
                },
            }
        }
    }
    r = router(yaml.safe_dump(doc), **{TOKEN_ENV: label_studio.token})
    ids = [f"ls-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    suggested: dict[str, int] = {}
    with httpx.Client(base_url=r.url, timeout=30) as c:
        for i, rid in enumerate(ids):
            body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, LAYERS[0]],
                                "data": [0.5 * i, -1.0, 2.0, 0.3]}]}  # fmt: skip
            answer = c.post("/v2/models/fraud/infer", json=body, headers={"x-request-id": rid})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-kanaria-automation"] == "review"
            probs = answer.json()["outputs"][0]["data"]
            suggested[rid] = max(range(len(probs)), key=probs.__getitem__)

    project = ls.wait_for(lambda: project_id(label_studio, title), "the review project")
    tasks = ls.wait_for(
        lambda: (t := project_tasks(label_studio, project)) and len(t) == len(ids) and t,
        "one task per review answer",
    )
    by_id = {t["data"]["request_id"]: t for t in tasks}
    assert sorted(by_id) == sorted(ids)
    for rid, task in by_id.items():
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "v1"
        [choice] = prediction["result"][0]["value"]["choices"]
        assert choice == CLASSES[suggested[rid]]

    # reviewers: agree on the first two, pick another class on the third
    for rid in ids[:2]:
        annotate(label_studio, by_id[rid]["id"], CLASSES[suggested[rid]])
    other = CLASSES[(suggested[ids[2]] + 1) % len(CLASSES)]
    annotate(label_studio, by_id[ids[2]]["id"], other)

    # the router pulls the choices back itself (every PULL_INTERVAL_S) into its feedback API
    def counted() -> bool:
        agree = server_metric(server, "kanaria_review_agreement_total", result="agree")
        disagree = server_metric(server, "kanaria_review_agreement_total", result="disagree")
        return (agree, disagree) == (2, 1)

    ls.wait_for(counted, "2 agreeing and 1 disagreeing label counted by the model server")
