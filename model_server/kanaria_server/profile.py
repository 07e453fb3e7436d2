"""Reference input profiles and the population stability index (PSI).

A profile records, per input, quantile bin edges and the share of reference rows
in each bin. Drift is then the PSI between those shares and the shares seen in
a sliding window of live traffic. Inputs with few features are profiled per
feature (and the worst feature's PSI is reported, since a drift in one feature
is what matters); wide inputs (images) are profiled as one pooled distribution
of all their values, to keep memory and scrape time bounded.

Pure functions over numpy arrays; file I/O is only in :func:`load_profile` and
:func:`save_profile`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kanaria_server.errors import ModelLoadError
from kanaria_server.model import Signature, read_model_bytes

Array = np.ndarray[Any, Any]
FORMAT = "kanaria.io/profile-v1"
MAX_PER_FEATURE = 256
"""Inputs with more features than this are profiled pooled (one distribution)."""
EPSILON = 1e-4
"""Floor on bin shares so that empty bins give a finite PSI."""


@dataclass(frozen=True)
class InputProfile:
    """Bin edges and reference shares of one input."""

    pooled: bool
    edges: Array
    """(features, bins-1) inner edges; bins are right-closed, NaN is ignored."""
    expected: Array
    """(features, bins) reference share of rows per bin."""

    @property
    def features(self) -> int:
        return int(self.edges.shape[0])

    def counts(self, values: Array) -> Array:
        """(features, bins) counts of ``values`` (rows x anything) per bin, NaN skipped."""
        rows = values.reshape(values.shape[0], -1).astype(np.float64, copy=False)
        if self.pooled:
            rows = rows.reshape(-1, 1)
        nbins = self.edges.shape[1] + 1
        idx = (rows[:, :, None] > self.edges[None, :, :]).sum(axis=2)
        valid = ~np.isnan(rows)
        flat = (idx + np.arange(rows.shape[1])[None, :] * nbins)[valid]
        return np.bincount(flat, minlength=rows.shape[1] * nbins).reshape(rows.shape[1], nbins)


def psi(expected: Array, actual_counts: Array) -> float:
    """Worst per-feature PSI of ``actual_counts`` (features x bins) against ``expected`` shares."""
    totals = actual_counts.sum(axis=1, keepdims=True)
    if not np.any(totals):
        return 0.0
    actual = np.where(totals > 0, actual_counts / np.maximum(totals, 1), expected)
    a = np.maximum(actual, EPSILON)
    e = np.maximum(expected, EPSILON)
    per_feature = ((a - e) * np.log(a / e)).sum(axis=1)
    return float(per_feature.max())


def build_input_profile(values: Array, bins: int = 10) -> InputProfile:
    """Quantile edges from reference ``values`` (rows x ...), then the reference shares."""
    if values.ndim < 1 or values.shape[0] < 2:
        raise ValueError("a profile needs at least two reference rows")
    rows = values.reshape(values.shape[0], -1).astype(np.float64)
    pooled = rows.shape[1] > MAX_PER_FEATURE
    data = rows.reshape(-1, 1) if pooled else rows
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    with np.errstate(all="ignore"):
        edges = np.nanquantile(data, qs, axis=0).T
    edges = np.nan_to_num(edges, nan=0.0)
    empty = InputProfile(pooled, edges, np.zeros((edges.shape[0], bins)))
    counts = empty.counts(values)
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return InputProfile(pooled, edges, counts / totals)


def build_profile(arrays: dict[str, Array], bins: int = 10) -> dict[str, Any]:
    """The JSON document of a profile over every numeric input in ``arrays``."""
    inputs: dict[str, Any] = {}
    for name, values in arrays.items():
        prof = build_input_profile(values, bins)
        inputs[name] = {
            "pooled": prof.pooled,
            "features": prof.features,
            "rows": int(values.shape[0]),
            "edges": prof.edges.tolist(),
            "expected": prof.expected.tolist(),
        }
    return {"format": FORMAT, "bins": bins, "inputs": inputs}


def save_profile(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc) + "\n", encoding="utf-8")


def parse_profile(doc: Any, signature: Signature, source: str) -> dict[str, InputProfile]:
    """Validate a profile document against the model; raises ModelLoadError on mismatch."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelLoadError(f"{source} is not a Kanaria profile (expected format {FORMAT})")
    profiles: dict[str, InputProfile] = {}
    for name, entry in (doc.get("inputs") or {}).items():
        spec = signature.input(name)
        if spec is None:
            known = ", ".join(t.name for t in signature.inputs)
            raise ModelLoadError(
                f"{source} profiles input {name!r}, which the model does not have ({known})"
            )
        try:
            edges = np.asarray(entry["edges"], dtype=np.float64)
            expected = np.asarray(entry["expected"], dtype=np.float64)
            pooled = bool(entry["pooled"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{source}: input {name!r} entry is malformed: {exc}") from exc
        if edges.ndim != 2 or expected.shape != (edges.shape[0], edges.shape[1] + 1):
            raise ModelLoadError(f"{source}: input {name!r} has inconsistent edges/expected")
        fixed = list(spec.shape[1:])
        if not pooled and all(d >= 0 for d in fixed):
            width = int(np.prod(fixed)) if fixed else 1
            if width != edges.shape[0]:
                raise ModelLoadError(
                    f"{source}: input {name!r} was profiled with {edges.shape[0]} features, "
                    f"the model's input has {width}"
                )
        profiles[name] = InputProfile(pooled, edges, expected)
    return profiles


def load_profile(
    uri: str, signature: Signature, timeout_s: float = 60.0
) -> dict[str, InputProfile]:
    """Read (path, file:// or http(s)://) and validate a profile for this model."""
    data = read_model_bytes(uri, None, timeout_s, what="reference profile")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ModelLoadError(f"reference profile {uri} is not valid JSON: {exc}") from exc
    return parse_profile(doc, signature, uri)
