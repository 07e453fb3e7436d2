"""A real router process in front of real test backends: split, stickiness,
overrides, request ids, non-model paths and the request-level limits."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import httpx

from tests.kanaria_router.conftest import Backend, RouterFactory, infer_body, routes

Z = 3.89  # two-sided 99.99%: a correct router fails this bound about once in 10,000 runs


def within_binomial(hits: int, n: int, p: float) -> bool:
    """Is ``hits`` out of ``n`` consistent with probability ``p`` (normal approximation)?"""
    return abs(hits - n * p) <= Z * math.sqrt(n * p * (1 - p))


def infer(client: httpx.Client, model: str = "fraud", **headers: str) -> httpx.Response:
    return client.post(f"/v2/models/{model}/infer", json=infer_body(), headers=headers)


def test_weighted_split_matches_weights(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(
        routes(
            {"fraud": {"versions": {"v1": (b["v1"], 70), "v2": (b["v2"], 20), "v3": (b["v3"], 10)}}}
        )
    )
    n = 1200
    with httpx.Client(base_url=r.url, timeout=10) as c:
        seen = Counter(infer(c).headers["x-kanaria-version"] for _ in range(n))
    assert set(seen) == {"v1", "v2", "v3"}
    for version, weight in (("v1", 0.7), ("v2", 0.2), ("v3", 0.1)):
        assert within_binomial(seen[version], n, weight), (version, seen)
    assert r.metric("kanaria_router_requests_total", model="fraud", code="200") == n
    assert r.metric("kanaria_router_weight_percent", model="fraud", version="v2") == 20


def test_sticky_users_only_move_to_the_canary_as_it_grows(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends

    def doc(canary: int) -> str:
        return routes(
            {
                "fraud": {
                    "versions": {"v1": (b["v1"], 100 - canary), "v2": (b["v2"], canary)},
                    "stickyKey": {"header": "x-user-id", "cookie": "uid"},
                }
            }
        )

    r = router(doc(10))
    users = [f"user-{i}" for i in range(150)]
    previous: set[str] = set()
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for step, canary in enumerate([10, 30, 60]):
            if step:
                r.write(doc(canary))
                r.wait_weight("fraud", "v2", canary)
            on_canary = set()
            for u in users:
                first = infer(c, **{"x-user-id": u}).headers["x-kanaria-version"]
                again = infer(c, **{"x-user-id": u}).headers["x-kanaria-version"]
                assert first == again, f"{u} switched version between two requests"
                if first == "v2":
                    on_canary.add(u)
            assert previous <= on_canary, f"users moved back to stable at {canary}%"
            assert within_binomial(len(on_canary), len(users), canary / 100)
            previous = on_canary
        # the cookie is read when the header is absent, and maps to the same bucket
        u = sorted(previous)[0]
        cookie = c.post("/v2/models/fraud/infer", json=infer_body(), headers={"Cookie": f"uid={u}"})
        assert cookie.headers["x-kanaria-version"] == "v2"


def test_header_and_path_overrides(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(routes({"fraud": {"versions": {"v1": (b["v1"], 100), "v2": (b["v2"], 0)}}}))
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for _ in range(5):
            pinned = infer(c, **{"x-kanaria-version": "v2"})
            assert pinned.status_code == 200
            assert pinned.headers["x-kanaria-version"] == "v2"
            assert pinned.json()["model_version"] == "v2"
        unknown = infer(c, **{"x-kanaria-version": "v9"})
        assert unknown.status_code == 400
        assert "no version 'v9'" in unknown.json()["error"]
        by_path = c.post("/v2/models/fraud/versions/v2/infer", json=infer_body())
        assert by_path.status_code == 200
        assert by_path.headers["x-kanaria-version"] == "v2"
        missing = c.post("/v2/models/fraud/versions/v7/infer", json=infer_body())
        assert missing.status_code == 404
        assert "v7" in missing.json()["error"]
        no_model = infer(c, model="ghost")
        assert no_model.status_code == 404
        assert "ghost" in no_model.json()["error"]


def test_request_ids_are_kept_or_generated_and_forwarded(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(routes({"fraud": {"versions": {"v1": (b["v1"], 100)}}}))
    with httpx.Client(base_url=r.url, timeout=10) as c:
        kept = infer(c, **{"x-request-id": "req-42"})
        assert kept.headers["x-request-id"] == "req-42"
        assert kept.json()["id"] == "req-42"  # the backend saw it
        made = infer(c)
        generated = made.headers["x-request-id"]
        assert len(generated) == 32
        assert made.json()["id"] == generated
        assert made.headers["x-kanaria-version"] == "v1"


def test_non_model_paths_are_answered_by_the_router(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(routes({"fraud": {"versions": {"v1": (b["v1"], 100)}}}))
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2").json()["name"] == "kanaria-router"
        assert c.get("/v2/models/fraud").json()["name"] == "fraud"  # metadata forwarded
        assert c.get("/v2/models/fraud/ready").status_code == 200
        other = c.get("/v2/repository/index")
        assert other.status_code == 404
        assert "no route" in other.json()["error"]
        assert "kanaria_router_config_reloads_total" in c.get("/metrics").text
        # no answer names the Python or aiohttp version, the backend's answers included
        answers = [c.get("/v2/health/live"), other, c.get("/v2/models/fraud"), c.get("/metrics")]
        answers.append(c.post("/v2/models/fraud/infer", json=infer_body()))
        assert {a.headers.get("server") for a in answers} == {"kanaria-router"}


def test_hop_by_hop_headers_are_not_forwarded(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(routes({"fraud": {"versions": {"v1": (b["v1"], 100)}}}))
    with httpx.Client(base_url=r.url, timeout=10) as c:
        answer = infer(
            c,
            **{
                "Connection": "keep-alive, X-Private-Hop",
                "X-Private-Hop": "secret",
                "Proxy-Authorization": "Basic c2VjcmV0",
                "X-User-Id": "u1",
            },
        )
    assert answer.status_code == 200
    seen = {k.lower() for k in b["v1"].stats()["last_headers"]}
    assert "x-private-hop" not in seen
    assert "proxy-authorization" not in seen
    assert "x-user-id" in seen
    assert "x-request-id" in seen


def test_body_limit_gives_413(router: RouterFactory, shared_backends: dict[str, Backend]) -> None:
    b = shared_backends
    r = router(
        routes({"fraud": {"versions": {"v1": (b["v1"], 100)}}}), KANARIA_MAX_BODY_BYTES="1000"
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        big = c.post("/v2/models/fraud/infer", content=b"x" * 5000)
        assert big.status_code == 413
        assert "1000 bytes" in big.json()["error"]

        def chunks() -> Iterator[bytes]:
            yield b"y" * 800
            yield b"y" * 800

        chunked = c.post("/v2/models/fraud/infer", content=chunks())  # no Content-Length
        assert chunked.status_code == 413
        assert infer(c).status_code == 200


def test_unready_versions_get_no_traffic(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(routes({"fraud": {"versions": {"v1": (b["v1"], 50), "v2": (b["v2"], 50, False)}}}))
    with httpx.Client(base_url=r.url, timeout=10) as c:
        seen = {infer(c).headers["x-kanaria-version"] for _ in range(60)}
        assert seen == {"v1"}
        pinned = infer(c, **{"x-kanaria-version": "v2"})
        assert pinned.status_code == 503
        assert "not ready" in pinned.json()["error"]


def test_two_models_on_one_router(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(
        routes(
            {
                "fraud": {"versions": {"v1": (b["v1"], 100)}},
                "churn": {"versions": {"v3": (b["v3"], 100)}},
            }
        )
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert infer(c, "fraud").headers["x-kanaria-version"] == "v1"
        assert infer(c, "churn").headers["x-kanaria-version"] == "v3"
        assert infer(c, "churn").json()["model_name"] == "churn"
