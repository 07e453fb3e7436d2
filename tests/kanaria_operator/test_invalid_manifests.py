"""Bad ModelDeployments are refused at ``kubectl apply`` with a message naming the field.

The CRD generated from kanaria.api (schema + CEL rules) does this in the API
server; the operator never sees these objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

VALID: dict[str, Any] = {
    "apiVersion": "kanaria.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud"},
    "spec": {
        "model": {"version": "v1", "uri": "https://models.example.com/fraud/v1.onnx"},
        "replicas": 2,
        "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}},
        "analysis": {
            "interval": "30s",
            "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.99}],
        },
    },
}

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


GATE = "spec.analysis.metrics.0"
CASES: list[tuple[str, Mutation, list[str]]] = [
    ("missing model", _drop("spec.model"), ["spec.model"]),
    ("missing model uri", _drop("spec.model.uri"), ["spec.model.uri"]),
    ("version with a space", _set("spec.model.version", "v 1"), ["spec.model.version"]),
    ("sha256 not hex", _set("spec.model.sha256", "abc"), ["spec.model.sha256"]),
    ("zero replicas", _set("spec.replicas", 0), ["spec.replicas"]),
    ("replicas not a number", _set("spec.replicas", "two"), ["spec.replicas"]),
    ("no strategy", _set("spec.strategy", {}), ["spec.strategy"]),
    (
        "two strategies",
        _set("spec.strategy.blueGreen", {"autoPromote": True}),
        ["spec.strategy"],
    ),
    ("no canary steps", _set("spec.strategy.canary.steps", []), ["spec.strategy.canary.steps"]),
    (
        "step with two actions",
        _set("spec.strategy.canary.steps.0", {"setWeight": 10, "pause": {}}),
        ["spec.strategy.canary.steps"],
    ),
    (
        "weight above 100",
        _set("spec.strategy.canary.steps.0", {"setWeight": 150}),
        ["spec.strategy.canary.steps[0].setWeight"],
    ),
    (
        "decreasing weights",
        _set("spec.strategy.canary.steps", [{"setWeight": 50}, {"setWeight": 10}]),
        ["spec.strategy.canary.steps"],
    ),
    (
        "pause duration in words",
        _set("spec.strategy.canary.steps.1", {"pause": {"duration": "ten minutes"}}),
        ["spec.strategy.canary.steps[1].pause.duration"],
    ),
    (
        "interval under a second",
        _set("spec.analysis.interval", "500ms"),
        ["spec.analysis.interval"],
    ),
    (
        "gate without builtin or query",
        _set(GATE, {"name": "g", "min": 1}),
        ["spec.analysis.metrics"],
    ),
    (
        "unknown builtin",
        _set(GATE, {"name": "g", "builtin": "succesRate", "min": 1}),
        ["spec.analysis.metrics[0].builtin"],
    ),
    (
        "gate without bounds",
        _set(GATE, {"name": "g", "builtin": "successRate"}),
        ["spec.analysis.metrics"],
    ),
    (
        "min above max",
        _set(GATE, {"name": "g", "builtin": "successRate", "min": 0.9, "max": 0.5}),
        ["spec.analysis.metrics[0].min"],
    ),
    ("failureLimit < 0", _set("spec.analysis.failureLimit", -1), ["spec.analysis.failureLimit"]),
    ("misspelt field", _set("spec.replica", 3), ["spec.replica"]),
    (
        "sticky key without header or cookie",
        _set("spec.router", {"stickyKey": {}}),
        ["spec.router.stickyKey"],
    ),
    (
        "shadow graduating to a missing canary",
        _set("spec.strategy", {"shadow": {"graduateTo": "canary"}}),
        ["spec.strategy.shadow.canary"],
    ),
    (
        "mirror percent above 100",
        _set("spec.strategy", {"blueGreen": {"mirrorPercent": 150}}),
        ["spec.strategy.blueGreen.mirrorPercent"],
    ),
    ("name with capitals", _set("metadata.name", "Fraud_Model"), ["metadata.name"]),
    (
        "rate limit of zero",
        _set("spec.router", {"rateLimit": {"requestsPerSecond": 0}}),
        ["spec.router.rateLimit.requestsPerSecond"],
    ),
    (
        "trusted proxy that is no address",
        _set(
            "spec.router",
            {"rateLimit": {"requestsPerSecond": 5, "trustedProxies": ["10.0.0.0/8", "ingress"]}},
        ),
        ["spec.router.rateLimit.trustedProxies"],
    ),
]


def test_the_valid_base_is_accepted(installed: ControlPlane, namespace: str) -> None:
    installed.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(VALID)
    )


def test_a_rate_limit_behind_trusted_proxies_is_accepted(
    installed: ControlPlane, namespace: str
) -> None:
    doc = copy.deepcopy(VALID)
    doc["spec"]["router"] = {
        "rateLimit": {"requestsPerSecond": 5, "trustedProxies": ["10.0.0.0/8", "fd00::1"]}
    }
    installed.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc)
    )


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize(("mutate", "fields"), [(m, f) for _, m, f in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_invalid_manifest_is_rejected_naming_the_field(
    installed: ControlPlane, namespace: str, mutate: Mutation, fields: list[str]
) -> None:
    doc = copy.deepcopy(VALID)
    mutate(doc)
    result = installed.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(doc), check=False,
    )  # fmt: skip
    assert result.returncode != 0, f"accepted: {doc}"
    for field in fields:
        assert field in result.stderr, result.stderr
