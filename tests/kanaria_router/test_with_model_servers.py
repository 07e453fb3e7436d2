"""The router in front of real ``kanaria serve-model`` processes serving generated
ONNX models: shadow agreement is 1.0 for an identical model and lower for a
different one, and feedback reaches the server that made the prediction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from kanaria.modelgen import mlp_classifier
from tests.kanaria_router.conftest import Backend, RouterFactory, routes, start_model_server
from tests.support import procs

LAYERS = (4, 16, 3)
COMPARE = "kanaria_shadow_comparisons_total"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Backend]]:
    """v1 and v2 serve the same model (seed 0), v3 a different one (seed 1)."""
    root = tmp_path_factory.mktemp("model-servers")
    same = mlp_classifier(root / "seed0.onnx", LAYERS, seed=0)
    other = mlp_classifier(root / "seed1.onnx", LAYERS, seed=1)
    started: dict[str, Backend] = {}
    try:
        for version, model in (("v1", same), ("v2", same), ("v3", other)):
            started[version] = start_model_server(model, version, root / "logs")
        for b in started.values():
            assert b.proc is not None
            b.proc.wait_http(f"{b.url}/v2/health/ready", timeout=120)
        yield started
    finally:
        for b in started.values():
            if b.proc is not None:
                b.proc.stop()


def rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, LAYERS[0]],
                    "data": rng.normal(0, 2, LAYERS[0]).round(4).tolist(),
                }
            ]
        }
        for _ in range(n)
    ]


def mirrored(shadow: str, servers: dict[str, Backend]) -> str:
    return routes(
        {
            "fraud": {
                "versions": {"v1": (servers["v1"], 100), shadow: (servers[shadow], 0)},
                "mirror": {"version": shadow, "percent": 100},
            }
        }
    )


def test_agreement_is_one_for_the_same_model_and_lower_for_another(
    router: RouterFactory, servers: dict[str, Backend], tmp_path: Path
) -> None:
    r = router(mirrored("v2", servers))
    n = 60
    with httpx.Client(base_url=r.url, timeout=30) as c:
        for body in rows(n):
            assert c.post("/v2/models/fraud/infer", json=body).status_code == 200
    procs.wait_until(
        lambda: r.metric(COMPARE, model="fraud", version="v2") == n, 30, "v2 comparisons"
    )
    assert r.metric(COMPARE, model="fraud", version="v2", result="agree") == n

    r.write(mirrored("v3", servers))
    r.wait_weight("fraud", "v3", 0)
    with httpx.Client(base_url=r.url, timeout=30) as c:
        for body in rows(n):
            assert c.post("/v2/models/fraud/infer", json=body).status_code == 200
    procs.wait_until(
        lambda: r.metric(COMPARE, model="fraud", version="v3") == n, 30, "v3 comparisons"
    )
    agree = r.metric(COMPARE, model="fraud", version="v3", result="agree")
    assert n - agree > 0, "a different model should disagree on some rows"
    assert agree / n < 1.0


def test_feedback_reaches_the_model_server_that_predicted(
    router: RouterFactory, servers: dict[str, Backend]
) -> None:
    r = router(
        routes({"fraud": {"versions": {"v1": (servers["v1"], 50), "v3": (servers["v3"], 50)}}})
    )
    served: dict[str, str] = {}
    with httpx.Client(base_url=r.url, timeout=30) as c:
        for i, body in enumerate(rows(20, seed=3)):
            answer = c.post(
                "/v2/models/fraud/infer", json=body, headers={"x-request-id": f"fb-{i}"}
            )
            assert answer.status_code == 200
            served[f"fb-{i}"] = answer.headers["x-kanaria-version"]
        labels = [{"id": rid, "label": 0} for rid in served]
        result = c.post("/v2/models/fraud/feedback", json=labels)
        assert result.status_code == 200, result.text
        assert result.json()["unknown"] == []
    for version in ("v1", "v3"):
        text = httpx.get(f"{servers[version].url}/metrics", timeout=10).text
        scored = sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("kanaria_feedback_total{") and 'result="unknown"' not in line
        )
        assert scored == sum(1 for v in served.values() if v == version), (version, text)
