"""Decode V2 infer requests into validated numpy arrays, and encode V2 responses.

This is the hot path, so it checks the body against the model signature with
plain Python and numpy instead of a generic schema library, and every check
ends in a :class:`~kanaria_server.errors.BadRequestError` that names the input and
what the model expects. Supports JSON tensors and the binary tensor data
extension (``Inference-Header-Content-Length``) in both directions.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from kanaria_server.datatypes import ELEMENT_SIZE, FLOAT_TYPES, INT_TYPES, V2_TO_NUMPY
from kanaria_server.errors import BadRequestError
from kanaria_server.model import Signature, TensorSpec

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class RequestedOutput:
    """An output the caller wants back, and whether as binary tensor data."""

    name: str
    binary: bool


@dataclass
class InferRequest:
    """A decoded, validated infer request."""

    id: str | None
    inputs: dict[str, Array]
    outputs: list[RequestedOutput]
    rows: int
    """Size of the first (batch) dimension; what dynamic batching merges."""
    parameters: dict[str, Any] = field(default_factory=dict)


def _describe_shape(spec: TensorSpec) -> str:
    return "[" + ", ".join("-1" if d < 0 else str(d) for d in spec.shape) + "]"


def _check_shape(spec: TensorSpec, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequestError(
            f"input {spec.name!r}: 'shape' must be a list of non-negative integers, got {shape!r}"
        )
    if len(shape) != len(spec.shape):
        raise BadRequestError(
            f"input {spec.name!r}: shape {shape} has rank {len(shape)}, the model expects rank "
            f"{len(spec.shape)} {_describe_shape(spec)}"
        )
    for i, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if want >= 0 and got != want:
            raise BadRequestError(
                f"input {spec.name!r}: dimension {i} is {got}, the model expects {want} "
                f"(shape {_describe_shape(spec)})"
            )
    return tuple(shape)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _numeric_from_objects(spec: TensorSpec, data: list[Any]) -> Array:
    """Slow path for lists numpy could not type: allow null as NaN in float inputs only."""
    flat = _flatten(data)
    allow_null = spec.datatype in FLOAT_TYPES
    for value in flat:
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or (
            value is None and allow_null
        )
        if not ok:
            hint = " or null" if allow_null else ""
            raise BadRequestError(
                f"input {spec.name!r}: data must be numbers{hint} for {spec.datatype}, "
                f"found {type(value).__name__} {value!r:.40}"
            )
    try:
        return np.array([math.nan if v is None else v for v in flat], dtype=np.float64)
    except (OverflowError, ValueError) as exc:
        raise BadRequestError(f"input {spec.name!r}: data out of range: {exc}") from exc


def _integers(spec: TensorSpec, data: list[Any], arr: Array) -> Array:
    """Exact integer conversion: floats must be whole, values must fit the type."""
    target = V2_TO_NUMPY[spec.datatype]
    if arr.dtype.kind == "f" and arr.size:
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
            raise BadRequestError(f"input {spec.name!r}: data must be integers for {spec.datatype}")
        if np.abs(arr).max() > 2**53:  # numpy typed mixed big ints as float: convert exactly
            arr = np.asarray(_flatten(data), dtype=object)
    info = np.iinfo(target)  # type: ignore[type-var]
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise BadRequestError(
            f"input {spec.name!r}: values must lie in [{info.min}, {info.max}] for {spec.datatype}"
        )
    return arr.astype(target, copy=False)


def _json_tensor(spec: TensorSpec, data: Any, count: int) -> Array:
    if not isinstance(data, list):
        raise BadRequestError(f"input {spec.name!r}: 'data' must be a JSON list of values")
    if spec.datatype == "BYTES":
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise BadRequestError(f"input {spec.name!r}: BYTES data must be a list of strings")
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return _check_count(spec, arr, count)
    try:
        arr = np.asarray(data)
    except (ValueError, OverflowError, TypeError):
        # ragged nesting or values numpy cannot type
        arr = _numeric_from_objects(spec, data)
    kind = arr.dtype.kind
    if kind in "OUS":
        arr = _numeric_from_objects(spec, data)
        kind = arr.dtype.kind
    if spec.datatype == "BOOL":
        if kind != "b" and arr.size:
            raise BadRequestError(f"input {spec.name!r}: BOOL data must be true/false values")
        return _check_count(spec, arr.astype(np.bool_, copy=False), count)
    if kind == "b" and arr.size:
        raise BadRequestError(
            f"input {spec.name!r}: data must be numbers for {spec.datatype}, got booleans"
        )
    if spec.datatype in INT_TYPES:
        return _check_count(spec, _integers(spec, data, arr), count)
    return _check_count(spec, arr.astype(V2_TO_NUMPY[spec.datatype], copy=False), count)


def _check_count(spec: TensorSpec, arr: Array, count: int) -> Array:
    if arr.size != count:
        raise BadRequestError(
            f"input {spec.name!r}: shape needs {count} values, the data holds {arr.size}"
        )
    return arr


def _binary_tensor(spec: TensorSpec, blob: memoryview, count: int) -> Array:
    if spec.datatype == "BYTES":
        items: list[str] = []
        offset = 0
        while offset < len(blob):
            if offset + 4 > len(blob):
                raise BadRequestError(f"input {spec.name!r}: truncated BYTES length prefix")
            (length,) = struct.unpack_from("<I", blob, offset)
            offset += 4
            if offset + length > len(blob):
                raise BadRequestError(
                    f"input {spec.name!r}: BYTES element overruns its binary data"
                )
            try:
                items.append(str(blob[offset : offset + length], "utf-8"))
            except UnicodeDecodeError as exc:
                raise BadRequestError(
                    f"input {spec.name!r}: BYTES element is not valid UTF-8 (onnxruntime strings "
                    "are text)"
                ) from exc
            offset += length
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return _check_count(spec, arr, count)
    size = ELEMENT_SIZE[spec.datatype]
    if len(blob) != count * size:
        raise BadRequestError(
            f"input {spec.name!r}: binary data is {len(blob)} bytes, shape and {spec.datatype} "
            f"need {count * size}"
        )
    if spec.datatype == "BOOL":
        raw = np.frombuffer(blob, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise BadRequestError(f"input {spec.name!r}: BOOL binary data must be bytes 0 or 1")
        return raw.astype(np.bool_)
    return np.frombuffer(blob, dtype=V2_TO_NUMPY[spec.datatype].newbyteorder("<"))


def _as_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequestError(f"{what} must be true or false, got {value!r:.40}")
    return value


def _parse_json(raw: bytes | memoryview) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc


def decode_request(body: bytes, header_length: int | None, signature: Signature) -> InferRequest:
    """Parse and validate an infer request body against the model's signature."""
    binary: memoryview | None = None
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise BadRequestError(
                f"Inference-Header-Content-Length is {header_length}, the body has "
                f"{len(body)} bytes"
            )
        view = memoryview(body)
        doc = _parse_json(view[:header_length])
        binary = view[header_length:]
    else:
        doc = _parse_json(body)
    if not isinstance(doc, dict):
        raise BadRequestError("request body must be a JSON object with an 'inputs' list")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("'id' must be a string")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequestError("'parameters' must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequestError("'inputs' must be a non-empty list of tensors")

    inputs: dict[str, Array] = {}
    offset = 0
    for item in raw_inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequestError("each entry of 'inputs' must be an object with a string 'name'")
        name = item["name"]
        spec = signature.input(name)
        if spec is None:
            expected = ", ".join(repr(t.name) for t in signature.inputs)
            raise BadRequestError(f"unknown input {name!r}; the model's inputs are {expected}")
        if name in inputs:
            raise BadRequestError(f"input {name!r} appears more than once")
        datatype = item.get("datatype")
        if datatype != spec.datatype:
            raise BadRequestError(
                f"input {name!r}: datatype {datatype!r} does not match the model's {spec.datatype}"
            )
        shape = _check_shape(spec, item.get("shape"))
        count = math.prod(shape)
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequestError(f"input {name!r}: 'parameters' must be a JSON object")
        size = params.get("binary_data_size")
        if size is not None:
            if binary is None:
                raise BadRequestError(
                    f"input {name!r}: binary_data_size given but the request has no "
                    "Inference-Header-Content-Length header"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadRequestError(
                    f"input {name!r}: binary_data_size must be a non-negative integer"
                )
            if offset + size > len(binary):
                raise BadRequestError(
                    f"input {name!r}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} bytes left)"
                )
            arr = _binary_tensor(spec, binary[offset : offset + size], count)
            offset += size
        elif "data" in item:
            arr = _json_tensor(spec, item["data"], count)
        else:
            raise BadRequestError(f"input {name!r}: needs 'data' or parameters.binary_data_size")
        inputs[name] = arr.reshape(shape)
    if binary is not None and offset != len(binary):
        raise BadRequestError(
            f"binary section has {len(binary) - offset} bytes not claimed by any input's "
            "binary_data_size"
        )
    missing = [t.name for t in signature.inputs if t.name not in inputs]
    if missing:
        raise BadRequestError(f"missing input(s) {', '.join(map(repr, missing))}")
    rows = 0
    if signature.batchable:
        firsts = {name: arr.shape[0] for name, arr in inputs.items()}
        if len(set(firsts.values())) > 1:
            raise BadRequestError(f"inputs disagree on the batch (first) dimension: {firsts}")
        rows = next(iter(firsts.values()))

    default_binary = _as_bool(
        parameters.get("binary_data_output", False), "parameters.binary_data_output"
    )
    raw_outputs = doc.get("outputs")
    outputs: list[RequestedOutput] = []
    if raw_outputs is None:
        outputs = [RequestedOutput(t.name, default_binary) for t in signature.outputs]
    else:
        if not isinstance(raw_outputs, list):
            raise BadRequestError("'outputs' must be a list of {\"name\": ...} objects")
        for out in raw_outputs:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise BadRequestError(
                    "each entry of 'outputs' must be an object with a string 'name'"
                )
            if signature.output(out["name"]) is None:
                expected = ", ".join(repr(t.name) for t in signature.outputs)
                raise BadRequestError(
                    f"unknown output {out['name']!r}; the model's outputs are {expected}"
                )
            oparams = out.get("parameters") or {}
            if not isinstance(oparams, dict):
                raise BadRequestError(f"output {out['name']!r}: 'parameters' must be a JSON object")
            binary_flag = _as_bool(
                oparams.get("binary_data", default_binary),
                f"output {out['name']!r}: parameters.binary_data",
            )
            outputs.append(RequestedOutput(out["name"], binary_flag))
    return InferRequest(request_id, inputs, outputs, rows, parameters)


def _bytes_elements(arr: Array) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr.ravel()]


def _json_data(datatype: str, arr: Array) -> Any:
    if datatype == "BYTES":
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.ravel()
        ]
    return np.ascontiguousarray(arr).ravel()


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[RequestedOutput, TensorSpec, Array]],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Serialise the response; returns (body, JSON header length when binary parts follow).
    ``parameters`` become the V2 response parameters (the automation decision)."""
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for requested, spec, arr in outputs:
        entry: dict[str, Any] = {
            "name": spec.name,
            "datatype": spec.datatype,
            "shape": list(arr.shape),
        }
        if requested.binary:
            if spec.datatype == "BYTES":
                blob = b"".join(struct.pack("<I", len(v)) + v for v in _bytes_elements(arr))
            else:
                blob = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(spec.datatype, arr)
        entries.append(entry)
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
