"""Judging a value against a gate's bounds: the pure core of every verdict."""

from __future__ import annotations

import math

from kanaria.api import MetricGate, Verdict


def judge(value: float, gate: MetricGate) -> tuple[Verdict, str]:
    """Verdict and reason for ``value``: Failed below ``min`` or above ``max`` (bounds are
    inclusive: a value equal to a bound passes); NaN is no data (Inconclusive); an
    infinite value is judged like any other number."""
    if math.isnan(value):
        return Verdict.Inconclusive, "value is NaN (no observations in the window)"
    if gate.min is not None and value < gate.min:
        return Verdict.Failed, f"value {value:.4g} < min {gate.min:g}"
    if gate.max is not None and value > gate.max:
        return Verdict.Failed, f"value {value:.4g} > max {gate.max:g}"
    lo = f"{gate.min:g}" if gate.min is not None else "-inf"
    hi = f"{gate.max:g}" if gate.max is not None else "+inf"
    return Verdict.Successful, f"value {value:.4g} within [{lo}, {hi}]"


def enough_requests(count: float, minimum: int, window: str) -> tuple[bool, str]:
    """Is ``count`` at least ``minimum`` (and at least one)? With the reason when not.

    Zero observations are never enough, whatever minRequests says: a gauge such as
    input drift still has a value when no request arrived, and a verdict on no
    traffic would promote (or roll back) a version nobody used.
    """
    if count >= max(minimum, 1):
        return True, ""
    if count <= 0:
        return False, f"no requests in {window}: nothing to judge"
    return False, f"only {count:.0f} requests in {window} (< minRequests {minimum})"
