"""The confidence policy's pure parts: spot checks (which automated answers are also
reviewed, and how the policy header carries the share) and per-row decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kanaria_server.automation import (
    Policy,
    decide,
    decide_rows,
    parse_policy,
    row_confidences,
)
from kanaria_server.errors import BadRequestError

from kanaria.routes import AutomationPolicy


def test_an_automated_answer_is_a_spot_check_when_the_draw_falls_below_the_share() -> None:
    policy = Policy("partial", 0.9, spot=0.1)
    assert decide(policy, 0.95, draw=0.05).spot_check
    assert not decide(policy, 0.95, draw=0.1).spot_check
    assert decide(policy, 0.95, draw=0.05).decision == "automated"  # the client's answer


def test_review_answers_are_never_spot_checks_and_both_are_reviewed() -> None:
    policy = Policy("partial", 0.9, spot=1.0)
    review = decide(policy, 0.5, draw=0.0)
    assert (review.decision, review.spot_check, review.reviewed) == ("review", False, True)
    spot = decide(policy, 0.99, draw=0.0)
    assert (spot.decision, spot.spot_check, spot.reviewed) == ("automated", True, True)
    assert not decide(Policy("full", 0.0), 0.99, draw=0.0).reviewed  # no share, no check


def test_the_routes_policy_header_round_trips_the_share() -> None:
    header = AutomationPolicy(mode="partial", threshold=0.9, spotCheck=0.02).header()
    assert header == "partial;0.9;spot=0.02"
    assert parse_policy(header.encode()) == Policy("partial", 0.9, None, 0.02)
    plain = AutomationPolicy(mode="partial", threshold=0.9).header()
    assert plain == "partial;0.9"  # routers and servers of before read it unchanged


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"partial;0.9;spot=often", "not a number"), (b"partial;0.9;spot=2", "spot must be 0-1")],
)
def test_a_bad_share_is_the_callers_error(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        parse_policy(raw)


def test_each_row_gets_its_own_confidence_and_decision() -> None:
    scores = np.array([[0.97, 0.03], [0.6, 0.4], [0.05, 0.95]], dtype=np.float32)
    policy = Policy("partial", 0.9)
    rows = row_confidences(policy, {"probabilities": scores}, "probabilities")
    assert rows is not None
    assert [round(c, 4) for c in rows if c is not None] == [0.97, 0.6, 0.95]
    assert decide_rows(policy, rows) == ["automated", "review", "automated"]


def test_a_named_output_gives_row_confidences_and_a_bad_value_is_never_automated() -> None:
    policy = Policy("partial", 0.5, output="score")
    score = np.array([[0.8], [math.nan], [1.5]], dtype=np.float64)
    rows = row_confidences(policy, {"score": score}, None)
    assert rows == [0.8, None, None]
    assert decide_rows(policy, rows) == ["automated", "review", "review"]
    assert row_confidences(policy, {}, None) is None  # no such output: no confidence
