"""Dynamic batching: concurrent requests are merged, each caller gets its own rows back,
and a request that fails inside a merged batch fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kanaria_server.settings import Settings

from kanaria.api import Batching
from kanaria.durations import parse_duration
from tests.kanaria_server.conftest import Server, metric_value, serve
from tests.kanaria_server.models import nonzero_model


@pytest.fixture(scope="module")
def gather_server(gather_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # a long batch delay makes concurrent requests share batches on any machine
    logs = tmp_path_factory.mktemp("gather-logs")
    with serve(
        gather_path, logs, "--max-batch-delay-ms", "200", "--max-batch-size", "64", name="gather"
    ) as server:
        yield server


def request(x: np.ndarray, idx: np.ndarray, request_id: str) -> dict[str, Any]:
    return {
        "id": request_id,
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()},
            {"name": "idx", "shape": list(idx.shape), "datatype": "INT64",
             "data": idx.ravel().tolist()},
        ],
    }  # fmt: skip


async def send_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies))


def test_each_caller_gets_its_own_rows(gather_server: Server) -> None:
    rng = np.random.default_rng(7)
    bodies, wanted = [], []
    for i in range(40):
        rows = 1 + i % 3
        x = (np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) + 1000 * i).astype(np.float32)
        idx = rng.integers(0, 4, size=(rows, 1))
        bodies.append(request(x, idx, f"r{i}"))
        wanted.append(np.take_along_axis(x, idx, axis=1))
    before = metric_value(gather_server.metrics(), "kanaria_server_batch_size_count")
    responses = asyncio.run(send_all(gather_server.infer_url(), bodies))
    for i, (response, want) in enumerate(zip(responses, wanted, strict=True)):
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["id"] == f"r{i}"
        [out] = doc["outputs"]
        assert out["shape"] == list(want.shape)
        np.testing.assert_array_equal(np.asarray(out["data"]).reshape(want.shape), want)
    text = gather_server.metrics()
    batches = metric_value(text, "kanaria_server_batch_size_count") - before
    assert batches < len(bodies), "40 concurrent requests should have shared batches"


def test_failing_request_does_not_fail_its_batch(gather_server: Server) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    bodies = [request(x * i, np.array([[i % 4]]), f"ok{i}") for i in range(10)]
    bodies.insert(5, request(x, np.array([[7]]), "bad"))  # index 7 of 4 columns
    responses = asyncio.run(send_all(gather_server.infer_url(), bodies))
    for body, response in zip(bodies, responses, strict=True):
        if body["id"] == "bad":
            assert response.status_code == 400
            assert "onnxruntime rejected the input" in response.json()["error"]
            assert "out of range" in response.json()["error"].lower()
        else:
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [float(int(body["id"][2:]))]
    assert gather_server.proc.alive()


def test_inputs_disagreeing_on_batch_dimension(gather_server: Server) -> None:
    body = request(np.ones((2, 4), dtype=np.float32), np.array([[1]]), "mismatch")
    r = httpx.post(gather_server.infer_url(), json=body)
    assert r.status_code == 400
    assert "batch (first) dimension" in r.json()["error"]


def test_output_that_is_not_per_row_is_not_split(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = nonzero_model(model_dir / "nonzero.onnx")
    logs = tmp_path_factory.mktemp("nonzero-logs")
    with serve(model, logs, "--max-batch-delay-ms", "200", name="nonzero") as server:
        xs = [np.full((1, 4), float(i + 1), dtype=np.float32) for i in range(6)]
        bodies = [
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                         "data": x.ravel().tolist()}]}
            for x in xs
        ]  # fmt: skip
        responses = asyncio.run(send_all(server.infer_url(), bodies))
        for response in responses:
            assert response.status_code == 200, response.text
            # one row of 4 non-zero values: indices (0, 0) .. (0, 3), whatever else was batched
            assert response.json()["outputs"][0]["data"] == [0, 0, 0, 1, 0, 2, 0, 3]
        text = server.metrics()
        assert metric_value(text, "kanaria_server_batch_size_count") == len(xs)


def test_a_model_deployment_batches_like_serve_model_by_default() -> None:
    """One default, declared twice because the core may not import the server: batching
    on, 64 rows, no fill delay (the figures behind it are in bench/README.md)."""
    spec = Batching()
    fields = Settings.model_fields
    assert spec.maxBatchSize == fields["max_batch_size"].default == 64
    assert parse_duration(spec.maxBatchDelay) * 1000 == fields["max_batch_delay_ms"].default == 0
