"""Per-row decisions through a real model server (issue 13): an answer of several rows
goes to review when any row is unsure, and also says per row what the policy made of
it, so a client can act on the confident rows; a reviewer's labels on it count in
each row's own confidence band."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from kanaria.modelgen import mlp_classifier
from tests.kanaria_router.automation_support import server_metric
from tests.kanaria_router.conftest import Backend, model_server
from tests.kanaria_router.test_with_model_servers import LAYERS

POLICY = "x-kanaria-automation-policy"
AGREEMENT = "kanaria_review_agreement_total"
BAND = 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("row-decisions")
    with model_server(mlp_classifier(root / "m.onnx", LAYERS, seed=4), root / "logs") as s:
        yield s


def infer(server: Backend, rows: np.ndarray, policy: str, rid: str) -> httpx.Response:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    answer = httpx.post(
        f"{server.url}/v2/models/fraud/infer",
        json=body,
        headers={"x-request-id": rid, POLICY: policy},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer


def test_rows_are_decided_one_by_one_and_labels_count_in_each_rows_band(server: Backend) -> None:
    rows = np.random.default_rng(8).normal(0, 2, (12, LAYERS[0])).astype(np.float32)
    probe = infer(server, rows, "assist", "probe").json()["parameters"]
    confidences = probe["kanaria_confidence_rows"]
    assert len(confidences) == len(rows)
    assert probe["kanaria_automation_rows"] == ["review"] * len(rows)
    # a threshold between the rows' confidences: some rows automated, some not
    threshold = float(np.median(confidences))
    answer = infer(server, rows, f"partial;{threshold}", "rows-1")
    params = answer.json()["parameters"]
    decisions = params["kanaria_automation_rows"]
    assert decisions == [
        "automated" if c >= threshold else "review" for c in params["kanaria_confidence_rows"]
    ]
    assert {"automated", "review"} <= set(decisions)
    # the answer as a whole: review (one unsure row is enough), at its least sure row
    assert answer.headers["x-kanaria-automation"] == params["kanaria_automation"] == "review"
    assert params["kanaria_confidence"] == pytest.approx(min(params["kanaria_confidence_rows"]))

    one = infer(server, rows[:1], f"partial;{threshold}", "one-row").json()["parameters"]
    assert "kanaria_automation_rows" not in one  # one row: the answer's decision is the row's

    # a reviewer labels every row as the model suggested: one agreement per row, each in
    # the band of that row's own confidence (not all in the least sure row's band)
    suggested = np.asarray(answer.json()["outputs"][0]["data"]).reshape(len(rows), -1)
    labels = [{"id": "rows-1", "label": suggested.argmax(axis=1).tolist()}]
    scored = httpx.post(f"{server.url}/v2/models/fraud/feedback", json=labels, timeout=30)
    assert scored.status_code == 200, scored.text
    expected: dict[str, int] = {}
    for c in params["kanaria_confidence_rows"]:
        band = f"{min(int(c / BAND + 1e-9), round(1 / BAND) - 1) * BAND:.2f}"
        expected[band] = expected.get(band, 0) + 1
    assert len(expected) > 1
    for band, count in expected.items():
        assert server_metric(server, AGREEMENT, band=band, result="agree") == count
