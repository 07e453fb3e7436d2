"""Mirroring and shadow comparison with real backends, and feedback forwarding.

"Never delays the client" is checked by order, not by time: with a shadow that
holds every copy until released, all client requests complete while the shadow
has answered none of them.
"""

from __future__ import annotations

from collections import defaultdict

import httpx

from tests.kanaria_router.conftest import (
    Backend,
    BackendFactory,
    RouterFactory,
    dead_backend,
    infer_body,
    routes,
)
from tests.support import procs

MIRROR = "kanaria_router_mirror_requests_total"
COMPARE = "kanaria_shadow_comparisons_total"


def infer(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/v2/models/fraud/infer", json=infer_body(), headers=headers)


def test_held_shadow_never_delays_clients_and_the_queue_is_bounded(
    router: RouterFactory, shared_backends: dict[str, Backend], backend: BackendFactory
) -> None:
    shadow = backend("v2", "--hold")
    r = router(
        routes(
            {
                "fraud": {
                    "versions": {"v1": (shared_backends["v1"], 100), "v2": (shadow, 0)},
                    "mirror": {"version": "v2", "percent": 100},
                }
            }
        ),
        KANARIA_MIRROR_CONCURRENCY="2",
        KANARIA_MIRROR_QUEUE_SIZE="3",
    )
    n = 20
    with httpx.Client(base_url=r.url, timeout=10) as c:
        answers = [infer(c) for _ in range(n)]
    assert {a.status_code for a in answers} == {200}
    assert {a.headers["x-kanaria-version"] for a in answers} == {"v1"}
    held = shadow.stats()
    assert held["answered"] == 0  # every client finished while the shadow held its copies
    assert held["received"] <= 2  # bounded concurrency
    dropped = r.metric(MIRROR, model="fraud", version="v2", outcome="dropped")
    assert dropped >= n - 2 - 3
    shadow.release()
    procs.wait_until(
        lambda: r.metric(MIRROR, model="fraud", version="v2", outcome="sent") + dropped == n,
        20,
        "queued copies to be sent after release",
    )
    assert shadow.stats()["shadow_copies"] == n - dropped
    # identical answers: agreement 1.0
    assert r.metric(COMPARE, model="fraud", version="v2", baseline="v1", result="agree") == (
        n - dropped
    )
    assert r.metric(COMPARE, model="fraud", result="disagree") == 0


def test_dead_shadow_fails_copies_not_clients(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    r = router(
        routes(
            {
                "fraud": {
                    "versions": {"v1": (shared_backends["v1"], 100), "v2": (dead_backend("v2"), 0)},
                    "mirror": {"version": "v2", "percent": 100},
                }
            }
        )
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert {infer(c).status_code for _ in range(30)} == {200}
    procs.wait_until(
        lambda: r.metric(MIRROR, model="fraud", version="v2", outcome="failed") == 30,
        20,
        "every copy to the dead shadow to be counted as failed",
    )
    assert r.metric(MIRROR, model="fraud", outcome="sent") == 0


def test_a_different_shadow_disagrees_and_is_logged_with_the_request_id(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(
        routes(
            {
                "fraud": {
                    "versions": {"v1": (b["v1"], 100), "v3": (b["v3"], 0)},
                    "mirror": {"version": "v3", "percent": 100},
                    "comparison": {"logDisagreements": 100},
                }
            }
        )
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for i in range(10):
            assert infer(c, **{"x-request-id": f"diff-{i}"}).status_code == 200
    procs.wait_until(
        lambda: r.metric(COMPARE, model="fraud", version="v3", result="disagree") == 10,
        20,
        "ten disagreements",
    )
    assert r.metric(COMPARE, model="fraud", result="agree") == 0
    log = r.proc.output()
    assert "shadow disagreement" in log
    assert "request_id=diff-3" in log
    assert "class 1 vs 0" in log


def test_partial_mirroring_copies_about_that_share(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(
        routes(
            {
                "fraud": {
                    "versions": {"v1": (b["v1"], 100), "v2": (b["v2"], 0)},
                    "mirror": {"version": "v2", "percent": 25},
                }
            }
        )
    )
    n = 400
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for _ in range(n):
            infer(c)
    procs.wait_until(
        lambda: r.metric("kanaria_router_requests_total", model="fraud") == n, 10, "all counted"
    )
    sent = r.metric(MIRROR, model="fraud", version="v2")
    assert abs(sent - n * 0.25) <= 3.89 * (n * 0.25 * 0.75) ** 0.5


def test_feedback_goes_to_the_version_that_served_each_id(
    router: RouterFactory, backend: BackendFactory
) -> None:
    v1, v2 = backend("v1"), backend("v2")
    r = router(routes({"fraud": {"versions": {"v1": (v1, 50), "v2": (v2, 50)}}}))
    served: dict[str, list[str]] = defaultdict(list)
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for i in range(30):
            answer = infer(c, **{"x-request-id": f"req-{i}"})
            served[answer.headers["x-kanaria-version"]].append(f"req-{i}")
        assert set(served) == {"v1", "v2"}
        labels = [{"id": f"req-{i}", "label": i % 3} for i in range(30)]
        answer = c.post(
            "/v2/models/fraud/feedback", json=[*labels, {"id": "never-seen", "label": 1}]
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["forwarded"] == {v: len(ids) for v, ids in served.items()}
        assert answer.json()["unknown"] == ["never-seen"]
        single = c.post("/v2/models/fraud/feedback", json={"id": "req-0", "label": 0})
        assert single.status_code == 200
        unknown = c.post("/v2/models/fraud/feedback", json={"id": "nope", "label": 0})
        assert unknown.status_code == 404
        assert "nope" in unknown.json()["error"]
        bad = c.post("/v2/models/fraud/feedback", json=[{"label": 0}])
        assert bad.status_code == 400
        assert "'id'" in bad.json()["error"]
        assert c.post("/v2/models/fraud/feedback", content=b"{").status_code == 400
    for b, version in ((v1, "v1"), (v2, "v2")):
        got = [item["id"] for item in b.stats()["feedback"]]
        expected = served[version] + (["req-0"] if "req-0" in served[version] else [])
        assert sorted(got) == sorted(expected)


def test_a_mirror_added_by_a_reload_starts_the_worker(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    """A router started without a mirror runs no mirror worker; a reload that adds
    one starts it, and the copies made while it starts are held and sent, not dropped."""
    b = shared_backends
    versions = {"v1": (b["v1"], 100), "v2": (b["v2"], 0)}
    r = router(routes({"fraud": {"versions": versions}}))
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert infer(c).status_code == 200
        assert r.metric(MIRROR, model="fraud") == 0
        assert procs.children(r.proc.pid, "mirror_worker") == []
        mirror = {"version": "v2", "percent": 100}
        r.write(routes({"fraud": {"versions": versions, "mirror": mirror}}))
        procs.wait_until(
            lambda: r.metric("kanaria_router_config_reloads_total", result="applied") == 2,
            10,
            "the reload",
        )

        # A burst right after the reload: the worker (a new interpreter) is not ready yet.
        for _ in range(40):
            assert infer(c).status_code == 200
        assert r.metric("kanaria_router_mirror_worker_resident_memory_bytes") == 0

        def all_sent() -> bool:
            return r.metric(MIRROR, model="fraud", version="v2", outcome="sent") == 40

        procs.wait_until(all_sent, 30, "the 40 held copies sent once the worker is up", 0.1)
        assert r.metric(MIRROR, model="fraud", outcome="dropped") == 0
        assert r.metric(COMPARE, model="fraud", version="v2", result="agree") == 40
    assert len(procs.children(r.proc.pid, "mirror_worker")) == 1
