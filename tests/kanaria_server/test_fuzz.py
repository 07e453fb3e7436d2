"""Property tests over malformed bodies: never a 5xx, and the server stays up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kanaria_server.conftest import Server

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)

VALID: dict[str, Any] = {
    "id": "fuzz",
    "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}],
    "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
}
PATHS = [
    ("id",),
    ("inputs",),
    ("inputs", 0),
    ("inputs", 0, "name"),
    ("inputs", 0, "shape"),
    ("inputs", 0, "shape", 0),
    ("inputs", 0, "datatype"),
    ("inputs", 0, "data"),
    ("inputs", 0, "data", 3),
    ("inputs", 0, "parameters"),
    ("outputs",),
    ("outputs", 0, "name"),
    ("outputs", 0, "parameters"),
    ("parameters",),
]


@pytest.fixture(scope="module")
def client(mlp_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mlp_server.url, timeout=30) as c:
        yield c


def replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def check(client: httpx.Client, mlp_server: Server, **kwargs: Any) -> None:
    r = client.post(f"/v2/models/{mlp_server.name}/infer", **kwargs)
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert isinstance(r.json()["error"], str)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(client: httpx.Client, mlp_server: Server, raw: bytes) -> None:
    check(client, mlp_server, content=raw)


@FUZZ
@given(json_values)
def test_random_json(client: httpx.Client, mlp_server: Server, doc: Any) -> None:
    check(client, mlp_server, json=doc)


@FUZZ
@given(st.sampled_from(PATHS), json_values)
def test_mutated_valid_request(
    client: httpx.Client, mlp_server: Server, path: tuple[Any, ...], value: Any
) -> None:
    check(client, mlp_server, json=replace(VALID, path, value))


@FUZZ
@given(st.integers(-5, 400), st.binary(max_size=300))
def test_random_binary_extension(
    client: httpx.Client, mlp_server: Server, header_length: int, raw: bytes
) -> None:
    head = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                     "parameters": {"binary_data_size": 256}}]}
    ).encode()  # fmt: skip
    check(
        client,
        mlp_server,
        content=head + raw,
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


def test_server_still_up_after_fuzzing(client: httpx.Client, mlp_server: Server) -> None:
    assert mlp_server.proc.alive()
    assert client.get("/v2/health/ready").status_code == 200
    metrics = client.get("/metrics").text
    assert 'code="500"' not in metrics
