"""Property tests of the codec (pure functions): any tensor of any datatype survives
JSON and binary encoding, request and response side."""

from __future__ import annotations

import json
import struct
from typing import Any, Literal, cast

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kanaria_server.codec import RequestedOutput, decode_request, encode_response
from kanaria_server.datatypes import V2_TO_NUMPY
from kanaria_server.model import Signature, TensorSpec

NUMERIC = [d for d in V2_TO_NUMPY if d != "BYTES"]


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    if datatype == "BYTES":
        flat = draw(st.lists(st.text(max_size=5), min_size=int(np.prod(shape)),
                             max_size=int(np.prod(shape))))  # fmt: skip
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return datatype, arr.reshape(shape)
    dtype = V2_TO_NUMPY[datatype]
    elements = None
    if dtype.kind == "f":
        width = cast(Literal[16, 32, 64], dtype.itemsize * 8)
        elements = st.floats(width=width, allow_nan=False, allow_infinity=False)
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def signature_for(datatype: str, arr: np.ndarray) -> Signature:
    spec = TensorSpec("x", datatype, (-1, *arr.shape[1:]))
    return Signature((spec,), (TensorSpec("y", datatype, spec.shape),))


def as_json_values(datatype: str, arr: np.ndarray) -> list[Any]:
    return [str(v) for v in arr.ravel()] if datatype == "BYTES" else arr.ravel().tolist()


def as_binary(datatype: str, arr: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in arr.ravel())
    if datatype == "BOOL":
        return arr.astype(np.uint8).tobytes()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


@settings(max_examples=300, deadline=None)
@given(tensors())
def test_json_request_round_trip(tensor: tuple[str, np.ndarray]) -> None:
    datatype, arr = tensor
    doc = {"inputs": [{"name": "x", "shape": list(arr.shape), "datatype": datatype,
                       "data": as_json_values(datatype, arr)}]}  # fmt: skip
    decoded = decode_request(json.dumps(doc).encode(), None, signature_for(datatype, arr))
    got = decoded.inputs["x"]
    assert got.shape == arr.shape
    assert got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr)
    assert decoded.rows == arr.shape[0]


@settings(max_examples=300, deadline=None)
@given(tensors())
def test_binary_request_round_trip(tensor: tuple[str, np.ndarray]) -> None:
    datatype, arr = tensor
    blob = as_binary(datatype, arr)
    entry = {"name": "x", "shape": list(arr.shape), "datatype": datatype,
             "parameters": {"binary_data_size": len(blob)}}  # fmt: skip
    head = json.dumps({"inputs": [entry]}).encode()
    decoded = decode_request(head + blob, len(head), signature_for(datatype, arr))
    np.testing.assert_array_equal(decoded.inputs["x"], arr)


@settings(max_examples=300, deadline=None)
@given(tensors(), st.booleans())
def test_response_round_trip(tensor: tuple[str, np.ndarray], binary: bool) -> None:
    datatype, arr = tensor
    spec = TensorSpec("y", datatype, arr.shape)
    outputs = [(RequestedOutput("y", binary), spec, arr)]
    body, json_length = encode_response("m", "1", "id-1", outputs)
    if binary:
        assert json_length is not None
        header = json.loads(body[:json_length])
        [out] = header["outputs"]
        assert out["parameters"]["binary_data_size"] == len(body) - json_length
        request_doc = {"inputs": [{"name": "x", "shape": out["shape"], "datatype": datatype,
                                   "parameters": out["parameters"]}]}  # fmt: skip
        head = json.dumps(request_doc).encode()
        back = decode_request(head + body[json_length:], len(head), signature_for(datatype, arr))
    else:
        assert json_length is None
        [out] = json.loads(body)["outputs"]
        request_doc = {"inputs": [{"name": "x", "shape": out["shape"], "datatype": datatype,
                                   "data": out["data"]}]}  # fmt: skip
        back = decode_request(json.dumps(request_doc).encode(), None, signature_for(datatype, arr))
    assert json.loads(body[:json_length] if binary else body)["id"] == "id-1"
    np.testing.assert_array_equal(back.inputs["x"], arr)
