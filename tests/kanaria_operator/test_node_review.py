"""The review path on real pods: router pods send review cases to a real Label Studio
and pull reviewers' choices back (issue 13's labelling tool, under the operator).

Label Studio runs on this host at the node IP (which pods reach, and nothing off the
machine does). The ModelDeployment names it in ``spec.automation.review.labelStudio``
with ``tokenSecret``: the operator gives the router pods the Secret's token as an
environment variable, never through the routes ConfigMap. In assist every answer is
a review case; each becomes a task with the model's class pre-filled and the
ModelDeployment's namespace in its data. A reviewer's choice, made through Label
Studio's API as the browser would, is pulled back by the router pod into its
feedback API, and the model-server pod counts it against its suggestion.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kanaria.review.test_labelstudio import annotate, project_tasks
from tests.kanaria_operator.node_env import WAIT_S, Platform, service_ip
from tests.kanaria_operator.test_node_product import WIDTH, deploy, node_md
from tests.support import contract, hostnet
from tests.support import labelstudio as ls
from tests.support.controlplane import unavailable
from tests.support.node import FIGURES

pytestmark = [pytest.mark.realnode, pytest.mark.prometheus, pytest.mark.slow]

CLASSES = ["legit", "fraud", "unsure"]  # the node's models have three classes
ANSWERS = 3


@pytest.fixture(scope="module")
def node_label_studio(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ls.LabelStudio]:
    """A Label Studio on the node IP, for router pods to reach."""
    try:
        install = ls.find_label_studio()
    except ls.LabelStudioUnavailableError as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable raises
    logs = tmp_path_factory.mktemp("node-label-studio-logs")
    studio = ls.start_label_studio(install, logs, host=hostnet.NODE_IP)
    try:
        yield studio
    finally:
        studio.stop()


def pod_metric(platform: Platform, namespace: str, name: str, **labels: str) -> float:
    """Sum of ``name``'s samples with ``labels`` over the namespace's model-server pods,
    read from each pod's /metrics (the host reaches pod IPs on the bridge)."""
    pods = platform.cluster.get_json(
        "pods", "-n", namespace, "-l", "app.kubernetes.io/component=model-server"
    )["items"]
    total = 0.0
    for pod in pods:
        ip = pod["status"].get("podIP")
        if not ip:
            continue
        text = httpx.get(f"http://{ip}:8080/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rpartition(" ")[2])
    return total


def test_router_pods_send_review_cases_to_label_studio_and_pull_choices_back(
    platform: Platform, node_namespace: str, node_label_studio: ls.LabelStudio, tmp_path: Path
) -> None:
    studio = node_label_studio
    cluster = platform.cluster
    title = f"Kanaria node review {uuid.uuid4().hex[:8]}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "label-studio"},
            "data": {"token": base64.b64encode(studio.token.encode()).decode()},
        },
        namespace=node_namespace,
    )
    doc = node_md("reviewed", platform.models.source("v1"), contract.CANARY)
    doc["spec"]["automation"] = {
        "mode": "assist",
        "review": {
            "labelStudio": {
                "url": studio.url,
                "project": title,
                "classes": CLASSES,
                "tokenSecret": "label-studio",
            }
        },
    }
    d = deploy(platform, node_namespace, doc)
    try:
        ip = service_ip(cluster, node_namespace, "reviewed")
        ids = [f"node-ls-{uuid.uuid4().hex[:8]}" for _ in range(ANSWERS)]
        suggested: dict[str, int] = {}
        with httpx.Client(base_url=f"http://{ip}", timeout=30) as c:
            for i, rid in enumerate(ids):
                body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, WIDTH],
                                    "data": [0.5 * i - 1.0] * WIDTH}]}  # fmt: skip
                answer = c.post(
                    "/v2/models/reviewed/infer", json=body, headers={"x-request-id": rid}
                )
                assert answer.status_code == 200, answer.text
                assert answer.headers["x-kanaria-automation"] == "review"
                probs = answer.json()["outputs"][0]["data"]
                suggested[rid] = max(range(len(probs)), key=probs.__getitem__)

        def tasks_of_ours() -> list[dict[str, Any]]:
            found = studio.api("GET", "/api/projects", params={"title": title}).json()
            projects = found["results"] if isinstance(found, dict) else found
            ours = [p["id"] for p in projects if p["title"] == title]
            if not ours:
                return []
            tasks = [t for t in project_tasks(studio, ours[0]) if t["data"]["request_id"] in ids]
            return tasks if len(tasks) == len(ids) else []

        tasks = ls.wait_for(tasks_of_ours, "one Label Studio task per review answer", WAIT_S)
        by_id = {t["data"]["request_id"]: t for t in tasks}
        for rid, task in by_id.items():
            assert task["data"]["namespace"] == node_namespace
            [prediction] = task["predictions"]
            assert prediction["model_version"] == "v1"
            [choice] = prediction["result"][0]["value"]["choices"]
            assert choice == CLASSES[suggested[rid]]

        # reviewers agree on all but the last, where they pick another class
        for rid in ids[:-1]:
            annotate(studio, by_id[rid]["id"], CLASSES[suggested[rid]])
        other = CLASSES[(suggested[ids[-1]] + 1) % len(CLASSES)]
        annotate(studio, by_id[ids[-1]]["id"], other)

        def counted() -> bool:
            agree = pod_metric(platform, node_namespace, "kanaria_review_agreement_total",
                               result="agree")  # fmt: skip
            disagree = pod_metric(platform, node_namespace, "kanaria_review_agreement_total",
                                  result="disagree")  # fmt: skip
            return (agree, disagree) == (ANSWERS - 1, 1)

        ls.wait_for(counted, "the reviewers' choices counted by the model-server pod", WAIT_S)
        FIGURES.append(f"review: {ANSWERS} Label Studio tasks from router pods, choices counted")
    finally:
        d.stop_client()
