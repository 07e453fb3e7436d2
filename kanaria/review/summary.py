"""How much of a tensor a record may carry: its values, or a summary past a size cap.

This is the prediction log's rule (``kanaria_server.predlog``, setting
``prediction_log_max_values``), stated once in the core so that a review case,
built in the router or the model server, carries what the prediction log would:
every value of a tensor with at most ``max_values`` elements; past that, its
shape, dtype, NaN count and min/mean/max of the finite values. A reviewer sees
small inputs whole, and a wide image never turns a review queue into a copy of
the traffic. Components may not import each other, so the model server's
prediction log can use :func:`describe` from here; until it does,
``tests/kanaria/review/test_summary.py`` holds both to the same output.

numpy is imported when a tensor is described, not with the module: the core
stays importable without it (the router and the model server both have it).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from math import prod
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np

    Array = np.ndarray[Any, Any]

DEFAULT_MAX_VALUES: Final = 256
"""The model server's default ``prediction_log_max_values`` (elements)."""

_V2_KINDS: Final = {"FP": "float", "UINT": "uint", "INT": "int"}


def describe(arr: Array, max_values: int = DEFAULT_MAX_VALUES) -> Any:
    """The tensor's values, or a summary (shape, dtype, min/mean/max, NaN count) past the cap."""
    import numpy as np  # noqa: PLC0415 (lazy: see the module docstring)

    if arr.size <= max_values:
        if arr.dtype == object:
            return [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in arr.ravel()
            ]
        return arr.tolist()
    summary: dict[str, Any] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "summary": True}
    if arr.dtype.kind in "fiub":
        values = arr.astype(np.float64, copy=False)
        finite = values[np.isfinite(values)]
        summary["nan"] = int(np.count_nonzero(np.isnan(values)))
        if finite.size:
            summary.update(
                min=float(finite.min()), mean=float(finite.mean()), max=float(finite.max())
            )
    return summary


def numpy_dtype(datatype: str) -> str:
    """numpy's name for a V2 datatype (``FP32`` -> ``float32``, ``BYTES`` -> ``object``).

    Raises ValueError for a name that is not a V2 datatype.
    """
    if datatype == "BOOL":
        return "bool"
    if datatype == "BYTES":
        return "object"
    for prefix, kind in _V2_KINDS.items():
        bits = datatype.removeprefix(prefix)
        if (
            bits != datatype
            and bits in {"8", "16", "32", "64"}
            and not (prefix == "FP" and bits == "8")
        ):
            return f"{kind}{bits}"
    raise ValueError(
        f"{datatype!r} is not a V2 datatype (BOOL, UINT8..64, INT8..64, FP16..64, BYTES)"
    )


def describe_tensor(tensor: Mapping[str, Any], max_values: int = DEFAULT_MAX_VALUES) -> Any:
    """:func:`describe` for a V2 JSON tensor (``{"name", "shape", "datatype", "data"}``).

    The router holds requests and answers as JSON, not arrays; the result is what
    the model server's prediction log writes for the same tensor. Raises
    ValueError when the tensor is malformed (its data does not fill its shape).
    """
    shape = [int(d) for d in tensor.get("shape", [])]
    data = tensor.get("data")
    code = _ARRAY_CODES.get(str(tensor.get("datatype")))
    if code is not None and type(data) is list and shape and len(data) <= max_values:
        values = _flat_values(code, data, shape)
        if values is not None:
            return values
    import numpy as np  # noqa: PLC0415 (lazy: see the module docstring)

    dtype = np.dtype(numpy_dtype(str(tensor.get("datatype", ""))))
    try:
        arr = np.asarray(tensor.get("data", []), dtype=dtype).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"tensor {tensor.get('name')!r} does not match its shape {shape}: {exc}"
        ) from exc
    return describe(arr, max_values)


_ARRAY_CODES: Final = {
    name: code
    for name, code, size in (
        ("FP32", "f", 4),
        ("FP64", "d", 8),
        ("INT32", "i", 4),
        ("INT64", "q", 8),
    )
    if array(code).itemsize == size
}
"""V2 datatypes whose values the stdlib's array module holds exactly as numpy does
(a C float is numpy's float32...): the typecode of each."""


def _flat_values(code: str, data: list[Any], shape: list[int]) -> list[Any] | None:
    """What :func:`describe` says of a small flat tensor of a common numeric datatype,
    without numpy (a case is made per review answer: this is 2-3x cheaper): the
    values converted to the datatype (FP32 rounds as numpy does), nested by ``shape``.
    None when this is not that case (nested or non-numeric data, a value out of the
    datatype's range, data not filling the shape): numpy decides then, as before."""
    if min(shape) < 1 or len(data) != prod(shape):
        return None
    try:
        values: list[Any] = array(code, data).tolist()
    except (TypeError, OverflowError, ValueError):
        return None
    for width in reversed(shape[1:]):
        values = [values[i : i + width] for i in range(0, len(values), width)]
    return values
