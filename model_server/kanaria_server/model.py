"""Load an ONNX model, read its signature from the graph, and warm it up.

The signature (names, V2 datatypes, shapes with dynamic dimensions as -1) drives
request validation, metadata and batching, so it is read once, here, from the
onnxruntime session rather than from anything the user declares.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kanaria_server.datatypes import ORT_TO_V2, V2_TO_NUMPY
from kanaria_server.errors import ModelLoadError


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model."""

    name: str
    datatype: str
    """V2 datatype, e.g. FP32."""
    shape: tuple[int, ...]
    """Dimensions; -1 where the graph leaves the dimension free."""

    @property
    def dtype(self) -> np.dtype[Any]:
        return V2_TO_NUMPY[self.datatype]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """The model's inputs and outputs as the V2 protocol describes them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @cached_property
    def batchable(self) -> bool:
        """True when every input and output has a free first dimension (the batch)."""
        return all(t.shape and t.shape[0] == -1 for t in (*self.inputs, *self.outputs))

    @cached_property
    def _by_name(self) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
        return {t.name: t for t in self.inputs}, {t.name: t for t in self.outputs}

    def input(self, name: str) -> TensorSpec | None:
        return self._by_name[0].get(name)

    def output(self, name: str) -> TensorSpec | None:
        return self._by_name[1].get(name)


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def _spec(arg: Any, what: str) -> TensorSpec:
    datatype = ORT_TO_V2.get(arg.type)
    if datatype is None:
        raise ModelLoadError(
            f"{what} {arg.name!r} has type {arg.type}, which the server cannot serve "
            f"(supported: {', '.join(sorted(ORT_TO_V2))})"
        )
    return TensorSpec(arg.name, datatype, _dims(list(arg.shape or [])))


def read_model_bytes(uri: str, sha256: str | None, timeout_s: float, what: str = "model") -> bytes:
    """Fetch ``what`` from a path, file:// URI, http(s):// URL or s3:// URI (see
    :mod:`kanaria_server.fetch_s3`) and verify its SHA-256, the same way for each."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        import httpx  # noqa: PLC0415 (only needed for remote models)

        try:
            response = httpx.get(uri, follow_redirects=True, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise ModelLoadError(f"cannot download {what} {uri}: {exc}") from exc
        if response.status_code != 200:
            raise ModelLoadError(f"cannot download {what} {uri}: HTTP {response.status_code}")
        data = response.content
    elif parsed.scheme == "s3":
        from kanaria_server.fetch_s3 import read_s3  # noqa: PLC0415 (only for s3:// models)

        data = read_s3(uri, timeout_s, what)
    elif parsed.scheme in ("file", ""):
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelLoadError(f"{what} file not found: {path}") from exc
        except OSError as exc:
            raise ModelLoadError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    else:
        raise ModelLoadError(
            f"unsupported {what} URI scheme {parsed.scheme!r} in {uri!r} "
            "(use a path, file://, http://, https:// or s3://)"
        )
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256.lower():
            raise ModelLoadError(
                f"{what} {uri} has SHA-256 {actual}, expected {sha256.lower()} (--sha256): "
                "refusing to serve a different file"
            )
    return data


class LoadedModel:
    """An onnxruntime session with its signature; ``run`` is called from one thread."""

    def __init__(self, data: bytes, intra_op_threads: int, source: str) -> None:
        import onnxruntime as ort  # noqa: PLC0415 (heavy; loaded once the server starts)

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{source} is not a loadable ONNX model: {first}") from exc
        self.signature = Signature(
            tuple(_spec(a, "input") for a in self.session.get_inputs()),
            tuple(_spec(a, "output") for a in self.session.get_outputs()),
        )
        self.output_names = [t.name for t in self.signature.outputs]
        self.source = source

    def run(self, feeds: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Run every output; the caller has validated the feeds against the signature."""
        results = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, results, strict=True))

    def warm_up(self) -> None:
        """One inference on zeros (free dimensions set to 1), so readiness means "can answer"."""
        feeds: dict[str, np.ndarray[Any, Any]] = {}
        for spec in self.signature.inputs:
            shape = tuple(1 if d < 0 else d for d in spec.shape)
            if spec.datatype == "BYTES":
                feeds[spec.name] = np.full(shape, "", dtype=object)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
        try:
            self.run(feeds)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"warm-up inference of {self.source} failed: {first}") from exc


def load_model(
    uri: str, sha256: str | None, intra_op_threads: int, timeout_s: float
) -> LoadedModel:
    """Read, verify, load and warm up the model; raises :class:`ModelLoadError` with the reason."""
    model = LoadedModel(read_model_bytes(uri, sha256, timeout_s), intra_op_threads, uri)
    model.warm_up()
    return model
