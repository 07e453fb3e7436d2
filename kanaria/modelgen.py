"""Build small ONNX models for demos, tests and benchmarks.

Kanaria needs real ONNX files to serve, roll out and compare, but shipping binary
models in the repository would hide how they were made. These builders write
them on demand with the ``onnx`` package (imported lazily: the core must stay
importable without it).

Weights are drawn from ``numpy.random.default_rng(seed)``, so two builds with the
same arguments produce byte-identical files and identical outputs (a shadow
comparison agrees), while a different seed gives a genuinely different model
(a shadow comparison disagrees).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

INPUT_NAME = "input"
"""Name of the single input of :func:`mlp_classifier` models."""
OUTPUT_NAME = "probabilities"
"""Name of the single output of :func:`mlp_classifier` models."""
DEFAULT_OPSET = 17
"""ONNX opset written by default: old enough for any onnxruntime since 1.14."""
DEFAULT_IR_VERSION = 8
"""ONNX IR version matching :data:`DEFAULT_OPSET` (onnxruntime rejects newer IRs)."""


def mlp_classifier(
    path: str | Path,
    layers: Sequence[int] = (64, 256, 256, 10),
    seed: int = 0,
    dynamic_batch: bool = True,
    softmax: bool = True,
    opset: int = DEFAULT_OPSET,
    fixed_batch: int = 1,
) -> Path:
    """Write a float32 multi-layer perceptron classifier and return its path.

    ``layers`` lists the widths from input to output, e.g. ``(64, 256, 256, 10)``
    is 64 features, two hidden ReLU layers of 256 and 10 classes. The input is
    ``"input"`` of shape ``[-1, layers[0]]`` (or ``[fixed_batch, ...]`` when
    ``dynamic_batch`` is False, which turns off server-side batching), the output
    ``"probabilities"`` of shape ``[-1, layers[-1]]``: a softmax over classes, or
    raw logits when ``softmax`` is False.
    """
    import numpy as np  # noqa: PLC0415 (lazy: core stays importable without numpy/onnx)
    import onnx  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    if len(layers) < 2 or any(int(w) < 1 for w in layers):
        raise ValueError(f"layers needs at least two positive widths, got {tuple(layers)}")
    rng = np.random.default_rng(seed)
    batch: int | str = "batch" if dynamic_batch else int(fixed_batch)
    initializers = []
    nodes = []
    current = INPUT_NAME
    n_layers = len(layers) - 1
    for i in range(n_layers):
        n_in, n_out = int(layers[i]), int(layers[i + 1])
        # He initialisation keeps activations in a useful range through deep stacks,
        # so the softmax is neither uniform nor saturated.
        weight = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out)).astype(np.float32)
        bias = rng.normal(0.0, 0.1, size=(n_out,)).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"W{i}"),
            numpy_helper.from_array(bias, f"B{i}"),
        ]
        last = i == n_layers - 1
        gemm_out = (OUTPUT_NAME if not softmax else "logits") if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"a{i}"]))
            current = f"a{i}"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1))
    graph = helper.make_graph(
        nodes,
        "kanaria_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, int(layers[0])])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, int(layers[-1])])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="kanaria.modelgen",
    )
    model.ir_version = DEFAULT_IR_VERSION
    onnx.checker.check_model(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out
