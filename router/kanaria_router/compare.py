"""Shadow comparison: does the shadow's answer agree with the primary's?

Pure functions over decoded V2 infer responses. What "agree" means depends on
the output:

- class probabilities or logits (a float output of shape ``[batch, k]`` with
  ``k > 1``): the predicted class (argmax of each row) must be the same; tiny
  numeric differences between two runtimes must not count as disagreement;
- class labels (integer, boolean or string outputs): equal element by element;
- anything else numeric (regressions, embeddings): equal within the
  configured relative and absolute tolerance.

A response agrees when every output of the primary agrees; a missing output,
a shape change or an unreadable body is a disagreement, with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}


@dataclass(frozen=True)
class Verdict:
    """Outcome of one comparison; ``reason`` explains a disagreement for the log."""

    agree: bool
    reason: str = ""


def _outputs(body: Any) -> dict[str, dict[str, Any]] | None:
    if not isinstance(body, dict) or not isinstance(body.get("outputs"), list):
        return None
    found: dict[str, dict[str, Any]] = {}
    for out in body["outputs"]:
        if isinstance(out, dict) and isinstance(out.get("name"), str):
            found[out["name"]] = out
    return found


def _array(out: dict[str, Any]) -> np.ndarray[Any, Any]:
    shape = [int(d) for d in out.get("shape", [])]
    data = np.asarray(out.get("data", []))
    return data.reshape(shape) if shape else data


def compare_outputs(
    primary: dict[str, Any], shadow: dict[str, Any], rtol: float, atol: float
) -> Verdict:
    """Compare one output tensor of the primary with the shadow's."""
    name = primary.get("name", "?")
    try:
        a = _array(primary)
        b = _array(shadow)
    except (ValueError, TypeError) as exc:
        return Verdict(False, f"output {name!r} is not a valid tensor: {exc}")
    if a.shape != b.shape:
        return Verdict(False, f"output {name!r} shape {list(a.shape)} vs {list(b.shape)}")
    datatype = str(primary.get("datatype", "")).upper()
    is_float = datatype in _FLOAT_TYPES or (not datatype and a.dtype.kind == "f")
    if not is_float:
        if np.array_equal(a, b):
            return Verdict(True)
        row = int(np.argmax(np.any(a != b, axis=tuple(range(1, a.ndim))))) if a.ndim > 1 else 0
        return Verdict(False, f"output {name!r} labels differ (first at row {row})")
    try:
        fa = a.astype(np.float64)
        fb = b.astype(np.float64)
    except (ValueError, TypeError) as exc:
        return Verdict(False, f"output {name!r} is not numeric: {exc}")
    if fa.ndim == 2 and fa.shape[1] > 1:
        ca = np.argmax(fa, axis=1)
        cb = np.argmax(fb, axis=1)
        if np.array_equal(ca, cb):
            return Verdict(True)
        row = int(np.argmax(ca != cb))
        return Verdict(False, f"output {name!r} row {row}: class {int(ca[row])} vs {int(cb[row])}")
    if np.allclose(fa, fb, rtol=rtol, atol=atol, equal_nan=True):
        return Verdict(True)
    diff = float(np.nanmax(np.abs(fa - fb))) if fa.size else 0.0
    return Verdict(False, f"output {name!r} differs by up to {diff:.6g} (rtol={rtol}, atol={atol})")


def compare_responses(primary: Any, shadow: Any, rtol: float, atol: float) -> Verdict:
    """Compare two decoded V2 infer responses output by output."""
    p = _outputs(primary)
    s = _outputs(shadow)
    if p is None:
        return Verdict(False, "primary answer has no outputs list")
    if s is None:
        return Verdict(False, "shadow answer has no outputs list")
    for name, out in p.items():
        other = s.get(name)
        if other is None:
            return Verdict(False, f"shadow answer lacks output {name!r}")
        verdict = compare_outputs(out, other, rtol, atol)
        if not verdict.agree:
            return verdict
    return Verdict(True)
