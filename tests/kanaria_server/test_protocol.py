"""The V2 REST protocol through a real server: endpoints, infer, binary extension, errors."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.kanaria_server.conftest import MODEL_NAME, Server, metric_value

ROWS = np.random.default_rng(11).standard_normal((3, 64)).astype(np.float32)


def expected(mlp_path: Any, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(mlp_path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"input": x})[0]
    return result


def body(x: np.ndarray = ROWS, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ],
        **extra,
    }


def test_health_and_server_metadata(mlp_server: Server) -> None:
    assert httpx.get(f"{mlp_server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{mlp_server.url}/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{mlp_server.url}/v2").json()
    assert meta["name"] == "kanaria"
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("suffix", ["", "/versions/1"])
def test_model_metadata_and_ready(mlp_server: Server, suffix: str) -> None:
    base = f"{mlp_server.url}/v2/models/{MODEL_NAME}{suffix}"
    meta = httpx.get(base).json()
    assert meta["name"] == MODEL_NAME
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    ready = httpx.get(f"{base}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"name": MODEL_NAME, "ready": True}


@pytest.mark.parametrize("versioned", [False, True])
def test_infer_json_matches_onnxruntime(mlp_server: Server, mlp_path: Any, versioned: bool) -> None:
    response = httpx.post(mlp_server.infer_url(versioned), json=body(id="req-1"))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["id"] == "req-1"
    assert doc["model_name"] == MODEL_NAME
    assert doc["model_version"] == "1"
    assert response.headers["x-request-id"] == "req-1"
    [out] = doc["outputs"]
    assert out["name"] == "probabilities"
    assert out["datatype"] == "FP32"
    assert out["shape"] == [3, 10]
    got = np.asarray(out["data"], dtype=np.float32).reshape(3, 10)
    np.testing.assert_allclose(got, expected(mlp_path, ROWS), rtol=1e-5, atol=1e-6)


def test_request_id_from_header_or_generated(mlp_server: Server) -> None:
    r = httpx.post(mlp_server.infer_url(), json=body(), headers={"x-request-id": "hdr-7"})
    assert r.headers["x-request-id"] == "hdr-7"
    assert "id" not in r.json()
    a = httpx.post(mlp_server.infer_url(), json=body()).headers["x-request-id"]
    b = httpx.post(mlp_server.infer_url(), json=body()).headers["x-request-id"]
    assert a
    assert b
    assert a != b


def test_control_characters_in_id_never_reach_headers(mlp_server: Server) -> None:
    r = httpx.post(mlp_server.infer_url(), json=body(id="a\r\nx-evil: 1"))
    assert r.status_code == 200
    assert "x-evil" not in r.headers
    assert r.headers["x-request-id"] == "a??x-evil: 1"
    assert r.json()["id"] == "a\r\nx-evil: 1"


def test_nested_data_and_parameters_accepted(mlp_server: Server) -> None:
    doc = body(parameters={"anything": 1})
    doc["inputs"][0]["data"] = ROWS.tolist()
    doc["inputs"][0]["parameters"] = {"note": "nested"}
    r = httpx.post(mlp_server.infer_url(), json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [3, 10]


def test_binary_request_and_response(mlp_server: Server, mlp_path: Any) -> None:
    header = {
        "inputs": [
            {"name": "input", "shape": [3, 64], "datatype": "FP32",
             "parameters": {"binary_data_size": ROWS.nbytes}}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }  # fmt: skip
    head = json.dumps(header).encode()
    r = httpx.post(
        mlp_server.infer_url(),
        content=head + ROWS.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    json_len = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:json_len])
    [out] = doc["outputs"]
    assert out["parameters"]["binary_data_size"] == 3 * 10 * 4
    assert "data" not in out
    got = np.frombuffer(r.content[json_len:], dtype="<f4").reshape(3, 10)
    np.testing.assert_allclose(got, expected(mlp_path, ROWS), rtol=1e-5, atol=1e-6)


def test_binary_data_output_request_parameter(mlp_server: Server) -> None:
    r = httpx.post(mlp_server.infer_url(), json=body(parameters={"binary_data_output": True}))
    assert r.status_code == 200
    json_len = int(r.headers["inference-header-content-length"])
    assert len(r.content) - json_len == 3 * 10 * 4


def test_requested_outputs(mlp_server: Server) -> None:
    r = httpx.post(mlp_server.infer_url(), json=body(outputs=[{"name": "probabilities"}]))
    assert [o["name"] for o in r.json()["outputs"]] == ["probabilities"]


def _binary(header: dict[str, Any], blob: bytes, length: int | None = None) -> dict[str, Any]:
    head = json.dumps(header).encode()
    return {
        "content": head + blob,
        "headers": {
            "Inference-Header-Content-Length": str(len(head) if length is None else length)
        },
    }


ONE_ROW = ROWS[:1].ravel().tolist()
BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("malformed json", {"content": b"{not json"}, "not valid JSON"),
    ("not an object", {"json": [1, 2]}, "JSON object"),
    ("no inputs", {"json": {"inputs": []}}, "'inputs'"),
    ("missing input", {"json": {"inputs": [{"name": "other", "shape": [1], "datatype": "FP32",
                                              "data": [1]}]}}, "unknown input 'other'"),
    ("wrong datatype", {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64",
                                               "data": ONE_ROW}]}}, "datatype 'FP64'"),
    ("wrong rank", {"json": {"inputs": [{"name": "input", "shape": [64], "datatype": "FP32",
                                           "data": ONE_ROW}]}}, "rank"),
    ("wrong fixed dim", {"json": {"inputs": [{"name": "input", "shape": [1, 63], "datatype": "FP32",
                                                "data": ONE_ROW[:63]}]}}, "dimension 1 is 63"),
    ("length mismatch", {"json": {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32",
                                                "data": ONE_ROW}]}}, "needs 128 values"),
    ("non-numeric", {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                            "data": ["x", *ONE_ROW[1:]]}]}}, "must be numbers"),
    ("duplicate input", {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                                "data": ONE_ROW}] * 2}}, "more than once"),
    ("unknown output", {"json": {**body(), "outputs": [{"name": "nope"}]}},
     "unknown output 'nope'"),
    ("bad id", {"json": {**body(), "id": 5}}, "'id' must be a string"),
    ("negative shape", {"json": {"inputs": [{"name": "input", "shape": [-1, 64], "datatype": "FP32",
                                               "data": ONE_ROW}]}}, "non-negative integers"),
    ("no data", {"json": {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32"}]}},
     "needs 'data'"),
    ("header length past body", _binary({"inputs": []}, b"", length=10_000),
     "Inference-Header-Content-Length is 10000"),
    ("binary size mismatch", _binary({"inputs": [{"name": "input", "shape": [1, 64],
                                                  "datatype": "FP32",
                                                  "parameters": {"binary_data_size": 8}}]},
                                     b"\0" * 8), "binary data is 8 bytes"),
    ("binary leftover", _binary({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                             "data": ONE_ROW}]}, b"\0" * 4), "not claimed"),
    ("binary without header", {"json": {"inputs": [{"name": "input", "shape": [1, 64],
                                                    "datatype": "FP32",
                                                    "parameters": {"binary_data_size": 256}}]}},
     "no Inference-Header-Content-Length"),
    ("bad header length", {"content": b"{}", "headers": {"Inference-Header-Content-Length": "x"}},
     "Inference-Header-Content-Length must be"),
    ("binary_data not bool", {"json": {**body(), "outputs": [{"name": "probabilities",
                                                             "parameters": {"binary_data": 1}}]}},
     "true or false"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "kwargs", "message"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_400_with_a_clear_message(
    mlp_server: Server, case: str, kwargs: dict[str, Any], message: str
) -> None:
    r = httpx.post(mlp_server.infer_url(), **kwargs)
    assert r.status_code == 400, (case, r.text)
    assert message in r.json()["error"]
    assert r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/v2/models/other/infer", "unknown model 'other'"),
        ("/v2/models/iris/versions/9/infer", "no version '9'"),
    ],
)
def test_unknown_model_or_version_is_404(mlp_server: Server, url: str, message: str) -> None:
    r = httpx.post(mlp_server.url + url, json=body())
    assert r.status_code == 404
    assert message in r.json()["error"]
    assert httpx.get(mlp_server.url + url.removesuffix("/infer")).status_code == 404


def test_unknown_route_uses_v2_error_shape(mlp_server: Server) -> None:
    r = httpx.get(f"{mlp_server.url}/v2/nothing/here")
    assert r.status_code == 404
    assert "error" in r.json()


def test_body_over_limit_is_413(mlp_server: Server) -> None:
    big = np.zeros((400, 64), dtype=np.float32)
    r = httpx.post(mlp_server.infer_url(), json=body(big))
    assert r.status_code == 413
    assert "65536-byte limit" in r.json()["error"]


def test_chunked_body_over_limit_is_413(mlp_server: Server) -> None:
    payload = json.dumps(body(np.zeros((400, 64), dtype=np.float32))).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(payload), 8192):
            yield payload[i : i + 8192]

    r = httpx.post(mlp_server.infer_url(), content=chunks())
    assert r.status_code == 413
    assert "65536-byte limit" in r.json()["error"]


def test_compressed_body_limits_and_errors(mlp_server: Server) -> None:
    bomb = gzip.compress(b" " * 1_000_000)  # 1 MB of JSON whitespace: ~1 kB compressed
    r = httpx.post(mlp_server.infer_url(), content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert "decompressed request body exceeds" in r.json()["error"]
    r = httpx.post(mlp_server.infer_url(), content=b"plain", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert "not valid gzip data" in r.json()["error"]
    r = httpx.post(mlp_server.infer_url(), content=b"x", headers={"Content-Encoding": "br"})
    assert r.status_code == 400
    assert "unsupported Content-Encoding 'br'" in r.json()["error"]
    ok = gzip.compress(json.dumps(body()).encode())
    r = httpx.post(mlp_server.infer_url(), content=ok, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200


def test_request_metrics(mlp_server: Server) -> None:
    before = metric_value(mlp_server.metrics(), "kanaria_server_requests_total", code="400")
    httpx.post(mlp_server.infer_url(), content=b"{")
    text = mlp_server.metrics()
    assert metric_value(text, "kanaria_server_requests_total", code="400") == before + 1
    assert metric_value(text, "kanaria_server_ready", model=MODEL_NAME) == 1
    assert metric_value(text, "kanaria_server_requests_total", endpoint="infer", code="200") > 0
    assert metric_value(text, "kanaria_server_inference_duration_seconds_count") > 0
    assert metric_value(text, "kanaria_server_batch_size_count") > 0
    assert metric_value(text, "kanaria_input_values_total", input="input") > 0
    assert metric_value(text, "kanaria_output_class_total", output="probabilities") > 0
    assert metric_value(text, "kanaria_output_confidence_count", output="probabilities") > 0
