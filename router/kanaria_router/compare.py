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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}

FAST_MAX_ELEMENTS = 256
"""Largest class-score tensor :func:`agrees_fast` reads in plain Python; past it numpy wins."""

_EXACT_INT = 2**53
"""Integers up to this size convert to float64 exactly, so comparing them as ints is safe."""


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


def _flat_numbers(data: Any, size: int) -> list[float] | None:
    """``data`` when it is a flat list of ``size`` plain numbers (no NaN), else None."""
    if not isinstance(data, list) or len(data) != size:
        return None
    for x in data:
        kind = type(x)
        if kind is float:
            if math.isnan(x):  # NaN: numpy's argmax picks it, a Python comparison would not
                return None
        elif kind is not int or not -_EXACT_INT <= x <= _EXACT_INT:
            return None
    return data


def _argmax(row: list[float]) -> int:
    best = 0
    for i in range(1, len(row)):
        if row[i] > row[best]:  # strict: the first maximum wins, as with numpy
            best = i
    return best


def agrees_fast(primary: dict[str, Any], shadow: dict[str, Any]) -> bool:
    """True when a small class-score output provably agrees, without numpy.

    Mirroring compares every copied answer on the router's single core, and for
    the common case (a float ``[rows, k]`` output, a few classes, one or a few
    rows) numpy's per-call overhead cost more than the comparison itself. False
    means "not decided here": :func:`compare_outputs` then runs the full check,
    which also writes the reason of a disagreement.
    """
    if str(primary.get("datatype", "")).upper() not in _FLOAT_TYPES:
        return False
    shape = primary.get("shape")
    if not isinstance(shape, list) or len(shape) != 2 or shadow.get("shape") != shape:
        return False
    rows, k = shape
    if type(rows) is not int or type(k) is not int or rows < 1 or k < 2:
        return False
    size = rows * k
    if size > FAST_MAX_ELEMENTS:
        return False
    a = _flat_numbers(primary.get("data"), size)
    b = _flat_numbers(shadow.get("data"), size)
    if a is None or b is None:
        return False
    return all(
        _argmax(a[start : start + k]) == _argmax(b[start : start + k])
        for start in range(0, size, k)
    )


def compare_outputs(
    primary: dict[str, Any], shadow: dict[str, Any], rtol: float, atol: float
) -> Verdict:
    """Compare one output tensor of the primary with the shadow's."""
    if agrees_fast(primary, shadow):
        return Verdict(True)
    return compare_arrays(primary, shadow, rtol, atol)


def compare_arrays(
    primary: dict[str, Any], shadow: dict[str, Any], rtol: float, atol: float
) -> Verdict:
    """The full check with numpy, for any output (what :func:`agrees_fast` must match)."""
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
