"""Rate limiting, feedback bookkeeping and header filtering (pure logic)."""

from __future__ import annotations

import pytest
from kanaria_router.feedback import ServedBy, group_by_version, parse_feedback
from kanaria_router.headers import REQUEST_DROP, cookie_value, forwardable
from kanaria_router.ratelimit import RateLimiter, retry_after


def test_token_bucket_allows_burst_then_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a", 0.0)
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    assert limiter.take("b", 0.0) == 0.0  # other clients are independent
    assert limiter.take("a", 1.0) == 0.0  # refilled


def test_rate_limiter_forgets_least_recent_clients() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=2)
    for client in ("a", "b", "c"):
        limiter.take(client, 0.0)
    assert limiter.take("a", 0.0) == 0.0  # "a" was forgotten: a fresh bucket


def test_served_by_is_bounded_lru() -> None:
    served = ServedBy(capacity=2)
    served.record("m", "r1", "v1")
    served.record("m", "r2", "v2")
    served.record("m", "r3", "v1")
    assert served.lookup("m", "r1") is None
    assert served.lookup("m", "r3") == "v1"
    assert len(served) == 2


def test_feedback_is_grouped_by_the_serving_version() -> None:
    served = ServedBy(10)
    served.record("m", "a", "v1")
    served.record("m", "b", "v2")
    items = parse_feedback(
        [{"id": "a", "label": 1}, {"id": "b", "label": 0}, {"id": "z", "label": 2}]
    )
    groups, unknown = group_by_version("m", items, served)
    assert groups == {"v1": [{"id": "a", "label": 1}], "v2": [{"id": "b", "label": 0}]}
    assert unknown == ["z"]
    assert parse_feedback({"id": "a", "label": None}) == [{"id": "a", "label": None}]


@pytest.mark.parametrize(
    ("body", "message"),
    [([], "empty"), ([3], "item 0"), ({"label": 1}, "'id'"), ({"id": "x"}, "no 'label'")],
)
def test_bad_feedback_names_the_problem(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_feedback(body)


def test_hop_by_hop_and_connection_listed_headers_are_dropped() -> None:
    headers = [
        ("Host", "x"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("TE", "trailers"),
        ("Proxy-Authorization", "secret"),
        ("Content-Type", "application/json"),
        ("X-User-Id", "u1"),
    ]
    kept = forwardable(headers, REQUEST_DROP, "keep-alive, X-Hop")
    assert kept == [("Content-Type", "application/json"), ("X-User-Id", "u1")]


def test_cookie_value() -> None:
    assert cookie_value({"Cookie": 'a=1; uid="u-7"; b=2'}, "uid") == "u-7"
    assert cookie_value({"Cookie": "a=1"}, "uid") is None
    assert cookie_value({}, "uid") is None
