"""The confidence policy through a real router and a real model server (issue 13): each
answer says automated or review (V2 parameter and header) and keeps the output; review
answers reach the review webhook; a new threshold in the routes document applies on
reload with no restart and no failed request; a client cannot set its own policy;
reviewers' labels on review cases count as agreement by confidence band."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kanaria.modelgen import mlp_classifier
from tests.kanaria.webhook_receiver import Receiver
from tests.kanaria_router.automation_support import server_metric
from tests.kanaria_router.conftest import Backend, RouterFactory, model_server
from tests.kanaria_router.test_with_model_servers import LAYERS, rows
from tests.support import procs

DECISIONS = "kanaria_automation_decisions_total"
AGREEMENT = "kanaria_review_agreement_total"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("automation")
    with model_server(mlp_classifier(root / "m.onnx", LAYERS, seed=0), root / "logs") as s:
        yield s


def doc(server: Backend, mode: str, threshold: float, webhook: str | None = None) -> str:
    model: dict[str, Any] = {
        "versions": {
            "v1": {
                "url": server.url,
                "weight": 100,
                "automation": {"mode": mode, "threshold": threshold},
            }
        }
    }
    if webhook:
        model["review"] = {"webhook": webhook}
    return yaml.safe_dump({"models": {"fraud": model}, "revision": f"{mode}-{threshold}"})


def test_each_answer_says_automated_or_review_and_reviews_reach_the_webhook(
    router: RouterFactory, server: Backend, tmp_path: Path
) -> None:
    with Receiver() as receiver:
        r = router(doc(server, "partial", 0.8, receiver.url))
        decisions: dict[str, str] = {}
        with httpx.Client(base_url=r.url, timeout=30) as c:
            for i, body in enumerate(rows(40, seed=11)):
                answer = c.post(
                    "/v2/models/fraud/infer",
                    json=body,
                    headers={"x-request-id": f"a-{i}", "x-kanaria-automation-policy": "full;0"},
                )
                assert answer.status_code == 200, answer.text
                params = answer.json()["parameters"]
                decision = answer.headers["x-kanaria-automation"]
                assert params["kanaria_automation"] == decision
                confidence = params["kanaria_confidence"]
                assert (confidence >= 0.8) == (decision == "automated")  # the client's own
                # policy header (full) was dropped: the routes' policy applies
                assert answer.json()["outputs"][0]["data"]  # the suggestion is kept
                decisions[f"a-{i}"] = decision
        review = sorted(k for k, d in decisions.items() if d == "review")
        assert review, "some answers of this model are below 0.8"
        assert len(review) < len(decisions)

        def delivered() -> list[str]:
            return sorted(c["requestId"] for b in receiver.bodies for c in b["cases"])

        procs.wait_until(lambda: len(delivered()) == len(review), 30, "review cases delivered")
        assert delivered() == review
        case = receiver.bodies[0]["cases"][0]
        assert case["version"] == "v1"
        assert case["confidence"] < 0.8
        assert case["classes"]

        # a reviewer agrees with the suggestion on every review case: agreement by band
        with httpx.Client(base_url=r.url, timeout=30) as c:
            labels = [
                {"id": case["requestId"], "label": case["classes"][0]}
                for body in receiver.bodies
                for case in body["cases"]
            ]
            assert c.post("/v2/models/fraud/feedback", json=labels).status_code == 200
        assert server_metric(server, AGREEMENT, result="agree") == len(review)
        assert server_metric(server, AGREEMENT, result="disagree") == 0

        # assist on reload: everything to review, no restart, no failed request
        before = server_metric(server, DECISIONS, decision="review")
        r.write(doc(server, "assist", 1.0, receiver.url))
        procs.wait_until(
            lambda: r.metric("kanaria_automation_threshold", model="fraud", version="v1") == 1.0,
            10,
            "assist applied",
        )
        with httpx.Client(base_url=r.url, timeout=30) as c:
            for body in rows(10, seed=12):
                answer = c.post("/v2/models/fraud/infer", json=body)
                assert answer.status_code == 200
                assert answer.headers["x-kanaria-automation"] == "review"
        assert server_metric(server, DECISIONS, decision="review") == before + 10


def test_a_request_without_a_policy_is_answered_as_before(server: Backend) -> None:
    answer = httpx.post(f"{server.url}/v2/models/fraud/infer", json=rows(1)[0], timeout=30)
    assert answer.status_code == 200
    assert "parameters" not in answer.json()
    assert "x-kanaria-automation" not in answer.headers


def test_a_malformed_policy_header_is_a_clear_400(server: Backend) -> None:
    answer = httpx.post(
        f"{server.url}/v2/models/fraud/infer",
        json=rows(1)[0],
        headers={"x-kanaria-automation-policy": "sometimes;0.9"},
        timeout=30,
    )
    assert answer.status_code == 400
    assert "assist, partial or full" in answer.json()["error"]
