"""Every V2 datatype, as JSON and as binary tensor data, through a real server."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kanaria_server.datatypes import V2_TO_NUMPY

from tests.kanaria_server.conftest import Server, metric_value, serve
from tests.kanaria_server.models import TYPED, TYPED_SHAPE


@pytest.fixture(scope="module")
def typed_server(typed_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(typed_path, tmp_path_factory.mktemp("typed-logs"), name="typed") as server:
        yield server


def sample(datatype: str) -> np.ndarray:
    """Six values per type, including the extremes of integer types."""
    if datatype == "BYTES":
        return np.array(["a", "", "héllo", "x y", "0", "ünï"], dtype=object).reshape(TYPED_SHAPE)
    if datatype == "BOOL":
        return np.array([True, False, True, True, False, False]).reshape(TYPED_SHAPE)
    dtype = V2_TO_NUMPY[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)  # type: ignore[type-var]
        values = [info.min, info.max, 0, 1, 2, 3]
        return np.array(values, dtype=dtype).reshape(TYPED_SHAPE)
    return np.array([-1.5, 0.0, 0.25, 2.0, 1e3, -7.75], dtype=dtype).reshape(TYPED_SHAPE)


def full_json_request() -> dict[str, Any]:
    inputs = []
    for datatype in TYPED:
        values = sample(datatype).ravel().tolist()
        inputs.append({"name": f"in_{datatype}", "shape": TYPED_SHAPE, "datatype": datatype,
                       "data": values})  # fmt: skip
    return {"inputs": inputs}


def encode_binary(datatype: str, arr: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in arr.ravel())
    if datatype == "BOOL":
        return arr.astype(np.uint8).tobytes()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def decode_binary(datatype: str, blob: bytes) -> np.ndarray:
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(blob):
            (n,) = struct.unpack_from("<I", blob, offset)
            items.append(blob[offset + 4 : offset + 4 + n].decode())
            offset += 4 + n
        return np.array(items, dtype=object).reshape(TYPED_SHAPE)
    if datatype == "BOOL":
        return np.frombuffer(blob, dtype=np.uint8).astype(bool).reshape(TYPED_SHAPE)
    return np.frombuffer(blob, dtype=V2_TO_NUMPY[datatype].newbyteorder("<")).reshape(TYPED_SHAPE)


def test_metadata_lists_every_datatype(typed_server: Server) -> None:
    meta = httpx.get(f"{typed_server.url}/v2/models/typed").json()
    assert {i["datatype"] for i in meta["inputs"]} == set(TYPED)
    assert all(i["shape"] == TYPED_SHAPE for i in meta["inputs"])


def test_json_round_trip_of_every_datatype(typed_server: Server) -> None:
    r = httpx.post(typed_server.infer_url(), json=full_json_request())
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    for datatype in TYPED:
        out = outputs[f"out_{datatype}"]
        assert out["datatype"] == datatype
        assert out["shape"] == TYPED_SHAPE
        want = sample(datatype)
        got = np.array(out["data"], dtype=object if datatype == "BYTES" else want.dtype)
        np.testing.assert_array_equal(got.reshape(TYPED_SHAPE), want, err_msg=datatype)


def test_binary_round_trip_of_every_datatype(typed_server: Server) -> None:
    inputs, blobs = [], []
    for datatype in TYPED:
        blob = encode_binary(datatype, sample(datatype))
        blobs.append(blob)
        inputs.append({"name": f"in_{datatype}", "shape": TYPED_SHAPE, "datatype": datatype,
                       "parameters": {"binary_data_size": len(blob)}})  # fmt: skip
    head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    r = httpx.post(
        typed_server.infer_url(),
        content=head + b"".join(blobs),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 200, r.text
    json_len = int(r.headers["inference-header-content-length"])
    offset = json_len
    for out in json.loads(r.content[:json_len])["outputs"]:
        size = out["parameters"]["binary_data_size"]
        datatype = out["datatype"]
        got = decode_binary(datatype, r.content[offset : offset + size])
        offset += size
        np.testing.assert_array_equal(got, sample(datatype), err_msg=datatype)
    assert offset == len(r.content)


def test_null_is_nan_for_float_inputs(typed_server: Server) -> None:
    doc = full_json_request()
    fp32 = next(i for i in doc["inputs"] if i["datatype"] == "FP32")
    fp32["data"][0] = None
    r = httpx.post(typed_server.infer_url(), json=doc)
    assert r.status_code == 200, r.text
    out = next(o for o in r.json()["outputs"] if o["name"] == "out_FP32")
    assert out["data"][0] is None  # NaN has no JSON form: it comes back as null
    text = typed_server.metrics()
    assert metric_value(text, "kanaria_input_missing_values_total", input="in_FP32") == 1


def _with(datatype: str, data: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    doc = full_json_request()
    entry = next(i for i in doc["inputs"] if i["datatype"] == datatype)
    entry["data"] = data
    if shape is not None:
        entry["shape"] = shape
    return doc


TYPE_ERRORS = [
    ("int gets floats", _with("INT32", [1.5, 2, 3, 4, 5, 6]), "must be integers for INT32"),
    ("uint8 out of range", _with("UINT8", [300, 2, 3, 4, 5, 6]), "[0, 255]"),
    ("int gets null", _with("INT64", [None, 2, 3, 4, 5, 6]), "must be numbers for INT64"),
    ("bool gets numbers", _with("BOOL", [1, 0, 1, 0, 1, 0]), "BOOL data must be true/false"),
    ("float gets bools", _with("FP64", [True] * 6), "got booleans"),
    ("bytes gets numbers", _with("BYTES", [1, 2, 3, 4, 5, 6]), "BYTES data must be a list of str"),
    ("ragged nesting", _with("FP32", [[1.0, 2.0, 3.0], [4.0]]), "shape needs 6 values"),
    ("fixed batch dim", _with("FP16", [1.0] * 3, shape=[1, 3]), "dimension 0 is 1"),
]


@pytest.mark.parametrize(("case", "doc", "message"), TYPE_ERRORS, ids=[c[0] for c in TYPE_ERRORS])
def test_datatype_errors_name_the_input(
    typed_server: Server, case: str, doc: dict[str, Any], message: str
) -> None:
    r = httpx.post(typed_server.infer_url(), json=doc)
    assert r.status_code == 400, (case, r.text)
    assert message in r.json()["error"]
    assert "input 'in_" in r.json()["error"]


def test_missing_inputs_are_named(typed_server: Server) -> None:
    doc = full_json_request()
    doc["inputs"] = [i for i in doc["inputs"] if i["datatype"] not in ("FP16", "BYTES")]
    r = httpx.post(typed_server.infer_url(), json=doc)
    assert r.status_code == 400
    assert r.json()["error"] == "missing input(s) 'in_FP16', 'in_BYTES'"


def test_invalid_utf8_bytes_rejected(typed_server: Server) -> None:
    doc = full_json_request()
    entry = next(i for i in doc["inputs"] if i["datatype"] == "BYTES")
    blob = b"".join(struct.pack("<I", 1) + b"\xff" for _ in range(6))
    del entry["data"]
    entry["parameters"] = {"binary_data_size": len(blob)}
    head = json.dumps(doc).encode()
    r = httpx.post(
        typed_server.infer_url(),
        content=head + blob,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 400
    assert "not valid UTF-8" in r.json()["error"]


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.sampled_from(sorted(TYPED)),
    st.lists(values, max_size=8) | st.lists(st.lists(values, max_size=3), max_size=3),
    st.sampled_from([TYPED_SHAPE, [3, 2], [2, 3, 1], [6]]),
)
def test_any_data_in_any_datatype_never_5xx(
    typed_server: Server, datatype: str, data: list[Any], shape: list[int]
) -> None:
    r = httpx.post(typed_server.infer_url(), json=_with(datatype, data, shape=shape))
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:  # then it was a faithful tensor: echoed as sent
        out = next(o for o in r.json()["outputs"] if o["name"] == f"out_{datatype}")
        assert out["shape"] == TYPED_SHAPE
