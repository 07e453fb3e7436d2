"""The routing table's pure logic: layout order, sticky buckets, ramps, readiness."""

from __future__ import annotations

from kanaria_router.table import ModelTable, RouteTable, bucket_of, natural_key

from kanaria.routes import RoutesConfig


def table(versions: dict[str, tuple[float, bool]], name: str = "m") -> ModelTable:
    doc = {
        "models": {
            name: {
                "versions": {
                    v: {"url": f"http://127.0.0.1:{9000 + i}/", "weight": w, "ready": r}
                    for i, (v, (w, r)) in enumerate(versions.items())
                }
            }
        }
    }
    return RouteTable.build(RoutesConfig.model_validate(doc)).models[name]


KEYS = [f"user-{i}" for i in range(5000)]


def test_natural_order_compares_numbers_as_numbers() -> None:
    assert sorted(["v10", "v9", "v2", "v1"], key=natural_key) == ["v1", "v2", "v9", "v10"]


def test_layout_ignores_document_order_and_weights() -> None:
    a = table({"v2": (10, True), "v1": (90, True)})
    b = table({"v1": (90, True), "v2": (10, True)})
    assert a.order == b.order == ("v1", "v2")
    assert a.bounds == b.bounds == (90.0, 100.0)


def test_trailing_slash_of_the_url_is_not_doubled() -> None:
    assert table({"v1": (100, True)}).versions["v1"].base_url == "http://127.0.0.1:9000"


def test_bucket_is_deterministic_and_in_range() -> None:
    points = [bucket_of("m", k) for k in KEYS]
    assert points == [bucket_of("m", k) for k in KEYS]
    assert all(0 <= p < 100 for p in points)
    assert bucket_of("m", "u") != bucket_of("other", "u")


def test_ramp_only_moves_users_from_stable_to_canary() -> None:
    """As the canary grows, its set of users only grows (every step, no way back)."""
    previous: set[str] = set()
    for canary in [0, 5, 10, 25, 49, 50, 51, 75, 99, 100]:
        t = table({"v1": (100 - canary, True), "v2": (canary, True)})
        on_canary = set()
        for k in KEYS:
            v = t.choose(bucket_of("m", k))
            assert v is not None
            if v.name == "v2":
                on_canary.add(k)
        assert previous <= on_canary, f"users went back to stable at {canary}%"
        # the share is close to the weight (5000 keys: 4 standard deviations)
        assert abs(len(on_canary) / len(KEYS) * 100 - canary) < 4 * 100 * (0.25 / len(KEYS)) ** 0.5
        previous = on_canary


def test_ramp_works_when_the_canary_name_sorts_first() -> None:
    previous: set[str] = set()
    for canary in [0, 10, 50, 90, 100]:
        t = table({"stable-b": (100 - canary, True), "canary-a": (canary, True)})
        on_canary = {k for k in KEYS if (v := t.choose(bucket_of("m", k))) and v.name == "canary-a"}
        assert previous <= on_canary
        previous = on_canary


def test_unready_version_gets_nothing_and_others_share_its_weight() -> None:
    t = table({"v1": (50, True), "v2": (30, False), "v3": (20, True)})
    assert t.order == ("v1", "v3")
    chosen = {v.name for p in range(100) if (v := t.choose(p + 0.5))}
    assert chosen == {"v1", "v3"}
    assert t.bounds[0] == 50 * 100 / 70


def test_fallback_picks_another_weighted_version() -> None:
    t = table({"v1": (50, True), "v2": (50, True), "v3": (0, True)})
    for p in (0.0, 42.0, 99.9):
        v = t.fallback("v1", p)
        assert v is not None
        assert v.name == "v2"
    assert table({"v1": (100, True)}).fallback("v1", 3.0) is None


def test_zero_weight_versions_are_not_chosen() -> None:
    t = table({"v1": (100, True), "v2": (0, True)})
    assert {v.name for p in range(100) if (v := t.choose(float(p)))} == {"v1"}


def test_an_unready_shadow_gets_no_copies() -> None:
    def mirrored(ready: bool) -> str | None:
        doc = {
            "models": {
                "m": {
                    "versions": {
                        "v1": {"url": "http://127.0.0.1:9000", "weight": 100},
                        "v2": {"url": "http://127.0.0.1:9001", "ready": ready},
                    },
                    "mirror": {"version": "v2", "percent": 50},
                }
            }
        }
        return RouteTable.build(RoutesConfig.model_validate(doc)).models["m"].mirror_version

    assert mirrored(True) == "v2"
    assert mirrored(False) is None
