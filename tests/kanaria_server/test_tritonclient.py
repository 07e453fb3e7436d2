"""A standard external client, tritonclient[http], works unchanged against the server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from tests.kanaria_server.conftest import MODEL_NAME, Server

X = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def want(mlp_path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(mlp_path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"input": X})[0]
    return result


@pytest.fixture
def client(mlp_server: Server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(mlp_server.url.removeprefix("http://"))


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL_NAME)
    meta = client.get_model_metadata(MODEL_NAME)
    assert meta["inputs"][0]["name"] == "input"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer(client: httpclient.InferenceServerClient, want: np.ndarray, binary: bool) -> None:
    tensor = httpclient.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    output = httpclient.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer(MODEL_NAME, [tensor], outputs=[output], request_id="triton-1")
    got = result.as_numpy("probabilities")
    assert got.shape == (4, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert result.get_response()["id"] == "triton-1"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(
    client: httpclient.InferenceServerClient, want: np.ndarray, algorithm: str
) -> None:
    tensor = httpclient.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer(MODEL_NAME, [tensor], request_compression_algorithm=algorithm)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, rtol=1e-5, atol=1e-6)


def test_infer_with_version_and_default_outputs(
    client: httpclient.InferenceServerClient, want: np.ndarray
) -> None:
    tensor = httpclient.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer(MODEL_NAME, [tensor], model_version="1")
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, rtol=1e-5, atol=1e-6)


def test_client_sees_server_error_message(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("input", [1, 63], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32))
    with pytest.raises(httpclient.InferenceServerException, match="dimension 1 is 63"):
        client.infer(MODEL_NAME, [tensor])
