"""ONNX models built in the tests with ``onnx`` (besides ``kanaria.modelgen``'s MLP)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

TYPED = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
"""One input per V2 datatype: in_<TYPE> -> Identity -> out_<TYPE>."""
TYPED_SHAPE = [2, 3]
"""Fixed shape of every typed input: no free batch dimension, so batching is off."""


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def typed_identity(path: Path) -> Path:
    """A model echoing one fixed-shape [2, 3] tensor of every V2 datatype."""
    inputs, outputs, nodes = [], [], []
    for name, elem in TYPED.items():
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, TYPED_SHAPE))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, TYPED_SHAPE))
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
    return _save(helper.make_graph(nodes, "typed", inputs, outputs), path)


def gather_model(path: Path) -> Path:
    """out[i] = x[i, idx[i]]: an out-of-range index passes validation but fails in onnxruntime."""
    graph = helper.make_graph(
        [helper.make_node("GatherElements", ["x", "idx"], ["out"], axis=1)],
        "gather",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1])],
    )
    return _save(graph, path)


def nonzero_model(path: Path) -> Path:
    """Indices of non-zero inputs: a free first output dimension that is not the batch."""
    graph = helper.make_graph(
        [
            helper.make_node("NonZero", ["x"], ["nz"]),
            helper.make_node("Transpose", ["nz"], ["y"], perm=[1, 0]),
        ],
        "nonzero",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["count", 2])],
    )
    return _save(graph, path)
