"""Shadow comparison: argmax for class scores, equality for labels, tolerance otherwise."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from kanaria_router.compare import agrees_fast, compare_arrays, compare_outputs, compare_responses


def answer(*outputs: tuple[str, str, list[int], list[Any]]) -> dict[str, Any]:
    return {
        "outputs": [
            {"name": n, "datatype": d, "shape": s, "data": data} for n, d, s, data in outputs
        ]
    }


PROBS = ("probabilities", "FP32", [2, 3], [0.1, 0.7, 0.2, 0.5, 0.4, 0.1])


def test_identical_answers_agree() -> None:
    assert compare_responses(answer(PROBS), answer(PROBS), 1e-3, 1e-5).agree


def test_class_scores_agree_on_argmax_despite_numeric_drift() -> None:
    drifted = ("probabilities", "FP32", [2, 3], [0.2, 0.6, 0.2, 0.45, 0.35, 0.2])
    assert compare_responses(answer(PROBS), answer(drifted), 1e-3, 1e-5).agree


def test_class_scores_disagree_when_a_row_changes_class() -> None:
    other = ("probabilities", "FP32", [2, 3], [0.1, 0.7, 0.2, 0.1, 0.4, 0.5])
    verdict = compare_responses(answer(PROBS), answer(other), 1e-3, 1e-5)
    assert not verdict.agree
    assert "row 1" in verdict.reason


def test_labels_must_match_exactly() -> None:
    a = answer(("label", "INT64", [3], [1, 2, 3]))
    assert compare_responses(a, answer(("label", "INT64", [3], [1, 2, 3])), 0, 0).agree
    assert not compare_responses(a, answer(("label", "INT64", [3], [1, 2, 4])), 0, 0).agree


@pytest.mark.parametrize(("shadow", "agree"), [(1.0005, True), (1.1, False)])
def test_regression_outputs_use_the_tolerance(shadow: float, agree: bool) -> None:
    a = answer(("score", "FP32", [1, 1], [1.0]))
    b = answer(("score", "FP32", [1, 1], [shadow]))
    assert compare_responses(a, b, rtol=1e-3, atol=1e-5).agree is agree


@pytest.mark.parametrize(
    ("shadow", "reason"),
    [
        (answer(("other", "FP32", [2, 3], PROBS[3])), "lacks output"),
        (answer(("probabilities", "FP32", [3, 2], PROBS[3])), "shape"),
        ({"error": "boom"}, "no outputs"),
        (None, "no outputs"),
    ],
)
def test_broken_shadow_answers_disagree_with_a_reason(shadow: Any, reason: str) -> None:
    verdict = compare_responses(answer(PROBS), shadow, 1e-3, 1e-5)
    assert not verdict.agree
    assert reason in verdict.reason


def _scores(rng: random.Random, rows: int, k: int) -> list[Any]:
    # few distinct values, so ties (first maximum wins) and equal rows are common
    return [rng.choice([0, 1, 0.25, 0.5, 0.75, -1.5, 1e300]) for _ in range(rows * k)]


def test_fast_class_check_matches_numpy_on_random_outputs() -> None:
    rng = random.Random(6)
    decided = 0
    for _ in range(3000):
        rows, k = rng.randint(1, 4), rng.randint(2, 4)
        datatype = rng.choice(["FP32", "fp64", "INT64", ""])
        a = {"name": "p", "datatype": datatype, "shape": [rows, k], "data": _scores(rng, rows, k)}
        b_shape = [rows, k] if rng.random() < 0.9 else [k, rows]
        b = {"name": "p", "datatype": datatype, "shape": b_shape, "data": _scores(rng, rows, k)}
        if rng.random() < 0.3:
            b["data"] = list(a["data"])
        full = compare_arrays(a, b, 1e-3, 1e-5)
        if agrees_fast(a, b):
            decided += 1
            assert full.agree, (a, b, full.reason)
        assert compare_outputs(a, b, 1e-3, 1e-5) == full
    assert decided > 300  # the fast path does decide the common case


@pytest.mark.parametrize(
    ("primary", "shadow"),
    [
        ({"shape": [1, 2], "data": [math.nan, 0.1]}, {"shape": [1, 2], "data": [0.2, 0.1]}),
        ({"shape": [1, 2], "data": [0.3, 0.1]}, {"shape": [1, 2], "data": ["0.3", 0.1]}),
        ({"shape": [1, 2], "data": [[0.3, 0.1]]}, {"shape": [1, 2], "data": [[0.3, 0.1]]}),
        ({"shape": [1, 2], "data": [0.3, 2**60]}, {"shape": [1, 2], "data": [0.3, 2**60]}),
        ({"shape": [2], "data": [0.3, 0.1]}, {"shape": [2], "data": [0.3, 0.1]}),
        ({"shape": [1, 300], "data": [0.5] * 300}, {"shape": [1, 300], "data": [0.5] * 300}),
    ],
)
def test_fast_class_check_leaves_unusual_outputs_to_numpy(
    primary: dict[str, Any], shadow: dict[str, Any]
) -> None:
    primary = {"name": "p", "datatype": "FP32", **primary}
    shadow = {"name": "p", "datatype": "FP32", **shadow}
    assert not agrees_fast(primary, shadow)
