"""The confidence policy through a real router and a real model server (issue 13): each
answer says automated or review (V2 parameter and header) and keeps the output; review
answers reach the review webhook; a new threshold in the routes document applies on
reload with no restart and no failed request; a client cannot set its own policy;
reviewers' labels on review cases count as agreement by confidence band."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from kanaria_router.review import PENDING_MAX_BYTES, AiohttpWebhookSink, ReviewHub
from prometheus_client import CollectorRegistry

from kanaria.api import Webhook
from kanaria.modelgen import mlp_classifier
from kanaria.review import PendingCase, ReviewCase, ReviewMetrics, ReviewSender, batch_body
from kanaria.review.sender import Retry
from kanaria.routes import ReviewRoute
from tests.kanaria.review.receiver import ScriptedReceiver
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
        # each case carries its own request's input (as FP32) and the answer's outputs,
        # though the router parses neither until the sender's batch goes
        sent = {f"a-{i}": body["inputs"][0] for i, body in enumerate(rows(40, seed=11))}
        for c in (c for b in receiver.bodies for c in b["cases"]):
            x = sent[c["requestId"]]
            assert c["inputs"] == {
                "input": np.asarray(x["data"], np.float32).reshape(x["shape"]).tolist()
            }
            (probs,) = c["outputs"].values()
            assert c["classes"] == [int(np.argmax(probs[0]))]
            assert c["confidence"] == pytest.approx(max(probs[0]), rel=1e-6)
            assert c["time"].endswith("Z")

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


@pytest.mark.parametrize(
    ("statuses", "sent", "failed", "retries"),
    [([503, 429], 2, 0, 2), ([400], 0, 2, 0), (None, 0, 2, 1)],
    ids=["retried then delivered", "refused", "no receiver"],
)
def test_the_routers_webhook_sink_posts_through_aiohttp_as_the_core_sink_does(
    statuses: list[int] | None, sent: int, failed: int, retries: int
) -> None:
    """The router's sink (aiohttp, its own session) classifies answers as
    kanaria.review.webhook does: 5xx and 429 retried, another 4xx failed at once, no
    answer retried; the body and the webhook's headers are the core sink's."""
    registry = CollectorRegistry()
    cases = [
        ReviewCase(requestId=f"r{i}", model="fraud", version="v1", time=datetime.now(UTC),
                   confidence=0.5, classes=[1], inputs={"x": [1.0, float(i)]})
        for i in range(2)
    ]  # fmt: skip

    async def scenario(url: str) -> ReviewSender:
        sink = AiohttpWebhookSink(Webhook(url=url, timeout="5s", headers={"Authorization": "t"}))
        retry = Retry(attempts=2 if statuses is None else 3, first_delay_s=0.01, jitter=0)
        s = ReviewSender(sink, "fraud", ReviewMetrics(registry), retry=retry, linger_s=0.01)
        s.start()
        for c in cases:
            assert s.offer(c)
        await s.drained()
        await s.aclose()
        return s

    if statuses is None:
        s = asyncio.run(scenario(f"http://127.0.0.1:{procs.free_port()}/review"))
    else:
        with ScriptedReceiver(statuses) as receiver:
            s = asyncio.run(scenario(receiver.url))
            assert len(receiver.arrived) == len(statuses) + (sent > 0)
            assert all(body == json.loads(batch_body(cases)) for body in receiver.arrived)
            assert all(h["Authorization"] == "t" for h in receiver.headers)
            assert all(h["Content-Type"] == "application/json" for h in receiver.headers)
    assert (s.counts.sent, s.counts.failed, s.counts.retries) == (sent, failed, retries)


def test_small_bodies_wait_as_bytes_and_large_ones_become_their_case_at_once() -> None:
    """The offer is O(1) for the usual bodies (parsed with the batch); bodies past
    PENDING_MAX_BYTES are summarised on the spot, so a full buffer of them holds cases
    within the prediction log's size rule rather than up to 16 MiB per request."""
    offered: list[object] = []

    class Sender:
        def start(self) -> None:
            pass

        def offer(self, case: object) -> bool:
            offered.append(case)
            return True

    hub = ReviewHub(ReviewMetrics(CollectorRegistry()))
    hub._senders["fraud"] = [Sender()]  # type: ignore[list-item]
    hub._routes["fraud"] = ReviewRoute(webhook="http://127.0.0.1:9/")
    answer = (
        b'{"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP32", "data": [0.2, 0.8]}]}'
    )
    n = PENDING_MAX_BYTES // 4  # "0.5, " each: past the bound
    big = json.dumps({"inputs": [{"name": "x", "shape": [n], "datatype": "FP64",
                                  "data": [0.5] * n}]}).encode()  # fmt: skip
    small = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]}]}'
    hub.offer("fraud", "v1", "r1", "0.8", small, answer)
    assert len(big) > PENDING_MAX_BYTES
    hub.offer("fraud", "v1", "r2", "0.8", big, answer)
    hub.offer("fraud", "v1", "r3", "0.8", b"\x00" * (PENDING_MAX_BYTES + 1), answer)
    hub.offer("other", "v1", "r4", "0.8", small, answer)  # no sinks: nothing
    first, second = offered
    assert isinstance(first, PendingCase)
    assert first.request is small
    assert first.build().inputs == {"x": [1.0, 2.0]}
    assert isinstance(second, ReviewCase)
    assert second.inputs["x"]["summary"] is True
    assert second.classes == [1]
