"""Open Inference Protocol datatypes and their numpy / ONNX equivalents.

The V2 protocol names tensor types (``FP32``, ``BYTES``...); onnxruntime names
them ``tensor(float)``, ``tensor(string)``...; numpy has its own dtypes. These
tables are the single translation between the three.
"""

from __future__ import annotations

from typing import Final

import numpy as np

V2_TO_NUMPY: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
"""Numpy dtype of each V2 datatype this server accepts (BYTES are Python objects)."""

ORT_TO_V2: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
"""V2 datatype of each onnxruntime tensor type the server can serve."""

ELEMENT_SIZE: Final[dict[str, int]] = {
    name: dt.itemsize for name, dt in V2_TO_NUMPY.items() if name != "BYTES"
}
"""Bytes per element in the binary tensor extension (BYTES are length-prefixed instead)."""

FLOAT_TYPES: Final = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES: Final = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
)
