"""Spot checks through a real model server and router (issue 13: reviewers keep seeing
some of what the model decides alone). Under ``partial;0.0;spot=1`` every answer is automated
and every one is also a spot check: the client's answer says automated and marks
the check, and a reviewer's label on it counts as agreement in its confidence band."""

from __future__ import annotations

from collections.abc import Iterator
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

POLICY = "x-kanaria-automation-policy"
AGREEMENT = "kanaria_review_agreement_total"
SPOT_CHECKS = "kanaria_automation_spot_checks_total"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("spot-checks")
    with model_server(mlp_classifier(root / "m.onnx", LAYERS, seed=3), root / "logs") as s:
        yield s


def test_spot_checked_answers_are_automated_marked_and_scored_by_band(server: Backend) -> None:
    suggested: dict[str, int] = {}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for i, body in enumerate(rows(6, seed=21)):
            answer = c.post(
                "/v2/models/fraud/infer",
                json=body,
                headers={"x-request-id": f"s-{i}", POLICY: "partial;0;spot=1"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-kanaria-automation"] == "automated"
            assert answer.headers["x-kanaria-spot-check"] == "true"
            params = answer.json()["parameters"]
            assert (params["kanaria_automation"], params["kanaria_spot_check"]) == (
                "automated",
                True,
            )
            probs = answer.json()["outputs"][0]["data"]
            suggested[f"s-{i}"] = max(range(len(probs)), key=probs.__getitem__)
        plain = c.post("/v2/models/fraud/infer", json=rows(1, seed=22)[0],
                       headers={POLICY: "partial;0"})  # fmt: skip
        assert "x-kanaria-spot-check" not in plain.headers
        assert "kanaria_spot_check" not in plain.json()["parameters"]
        assert server_metric(server, SPOT_CHECKS) == 6

        # reviewers agree on five, not on the last: agreement in the answers' bands
        last = list(suggested)[-1]
        suggested[last] = (suggested[last] + 1) % LAYERS[-1]
        labels = [{"id": rid, "label": cls} for rid, cls in suggested.items()]
        scored = c.post("/v2/models/fraud/feedback", json=labels)
        assert scored.status_code == 200, scored.text
    assert server_metric(server, AGREEMENT, result="agree") == 5
    assert server_metric(server, AGREEMENT, result="disagree") == 1


def test_the_router_sends_spot_checks_to_the_review_sinks_marked(
    router: RouterFactory, server: Backend
) -> None:
    """The routes' policy with spotCheck 1 and partial at 0: every answer is automated for
    the client, and every one reaches the review webhook flagged as a spot check."""
    policy = {"mode": "partial", "threshold": 0.0, "spotCheck": 1.0}
    with Receiver() as receiver:
        doc = {
            "models": {
                "fraud": {
                    "versions": {"v1": {"url": server.url, "weight": 100, "automation": policy}},
                    "review": {"webhook": receiver.url},
                }
            }
        }
        r = router(yaml.safe_dump(doc))
        ids = [f"r-{i}" for i in range(5)]
        with httpx.Client(base_url=r.url, timeout=30) as c:
            for rid, body in zip(ids, rows(len(ids), seed=23), strict=True):
                answer = c.post("/v2/models/fraud/infer", json=body, headers={"x-request-id": rid})
                assert answer.status_code == 200, answer.text
                assert answer.headers["x-kanaria-automation"] == "automated"
                assert answer.headers["x-kanaria-spot-check"] == "true"

        def delivered() -> list[dict[str, Any]]:
            return [case for b in receiver.bodies for case in b["cases"]]

        procs.wait_until(lambda: len(delivered()) == len(ids), 30, "spot checks delivered")
        assert sorted(case["requestId"] for case in delivered()) == ids
        assert all(case["spotCheck"] is True for case in delivered())
        assert all(case["classes"] for case in delivered())  # the suggestion, as for review
