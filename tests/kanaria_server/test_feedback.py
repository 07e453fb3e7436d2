"""Delayed labels: POST /v2/models/{name}/feedback matched by request id, through a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from kanaria_server.errors import BadRequestError
from kanaria_server.feedback import FeedbackStore, parse_feedback

from tests.kanaria_server.conftest import Server, metric_value, serve

CAPACITY = 3


@pytest.fixture(scope="module")
def server(mlp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("feedback-logs")
    with serve(mlp_path, logs, "--feedback-capacity", str(CAPACITY)) as s:
        yield s


def predict(server: Server, request_id: str, rows: int = 1, header: bool = False) -> list[int]:
    x = np.random.default_rng(abs(hash(request_id)) % 2**32).standard_normal((rows, 64))
    body = {"inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP32",
                        "data": x.ravel().tolist()}]}  # fmt: skip
    if header:
        r = httpx.post(server.infer_url(), json=body, headers={"x-request-id": request_id})
    else:
        r = httpx.post(server.infer_url(), json={**body, "id": request_id})
    assert r.status_code == 200
    return list(np.asarray(r.json()["outputs"][0]["data"]).reshape(rows, 10).argmax(axis=1))


def feedback(server: Server, doc: object, version: bool = False) -> httpx.Response:
    v = f"/versions/{server.version}" if version else ""
    return httpx.post(f"{server.url}/v2/models/{server.name}{v}/feedback", json=doc)


def test_correct_incorrect_and_unknown(server: Server) -> None:
    before = server.metrics()
    [a] = predict(server, "fa")
    [b] = predict(server, "fb", header=True)  # id from the x-request-id header
    r = feedback(
        server,
        [
            {"id": "fa", "label": int(a)},
            {"id": "fb", "label": int(b) + 1},
            {"id": "zz", "label": 0},
        ],
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"matched": 2, "correct": 1, "incorrect": 1, "unknown": ["zz"]}
    after = server.metrics()
    for result, delta in (("correct", 1), ("incorrect", 1), ("unknown", 1)):
        assert metric_value(after, "kanaria_feedback_total", result=result) == (
            metric_value(before, "kanaria_feedback_total", result=result) + delta
        )
    # a label is consumed: the same id again is unknown
    again = feedback(server, {"id": "fa", "label": int(a)}, version=True)
    assert again.json()["unknown"] == ["fa"]


def test_one_label_per_row(server: Server) -> None:
    classes = predict(server, "rows", rows=3)
    labels = [int(c) for c in classes]
    labels[1] = (labels[1] + 1) % 10
    r = feedback(server, {"id": "rows", "label": labels})
    assert r.json() == {"matched": 1, "correct": 2, "incorrect": 1, "unknown": []}


def test_memory_is_bounded(server: Server) -> None:
    for i in range(CAPACITY + 1):
        predict(server, f"cap{i}")
    r = feedback(server, [{"id": f"cap{i}", "label": 0} for i in range(CAPACITY + 1)])
    assert r.json()["unknown"] == ["cap0"]  # evicted: the oldest prediction
    assert r.json()["matched"] == CAPACITY


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "non-empty list"),
        ({"label": 1}, "string 'id'"),
        ({"id": "x", "label": "cat"}, "class index"),
        ({"id": "x", "label": True}, "class index"),
        ([{"id": "x", "label": 1}, 5], "feedback[1]"),
    ],
)
def test_malformed_feedback_is_400(server: Server, doc: object, message: str) -> None:
    r = feedback(server, doc)
    assert r.status_code == 400
    assert message in r.json()["error"]


def test_label_count_must_match_rows(server: Server) -> None:
    predict(server, "two", rows=2)
    r = feedback(server, {"id": "two", "label": [1, 2, 3]})
    assert r.status_code == 400
    assert "3 labels, the prediction had 2 rows" in r.json()["error"]


def test_feedback_for_unknown_model_is_404(server: Server) -> None:
    r = httpx.post(f"{server.url}/v2/models/nope/feedback", json={"id": "a", "label": 1})
    assert r.status_code == 404


def test_store_expires_entries_by_ttl() -> None:
    now = [0.0]
    store = FeedbackStore(capacity=10, ttl_s=5, clock=lambda: now[0])
    store.remember("a", [1])
    store.remember("b", [2])
    now[0] = 4.0
    assert store.score(parse_feedback({"id": "a", "label": 1})).correct == 1
    now[0] = 6.0
    result = store.score(parse_feedback({"id": "b", "label": 2}))
    assert result.unknown == ["b"]


def test_parse_rejects_bad_documents() -> None:
    with pytest.raises(BadRequestError, match="class index"):
        parse_feedback({"id": "a", "label": 1.5})
