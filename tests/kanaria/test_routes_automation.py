"""The confidence policy in the routes document (issue 13): which policy each version
gets from spec and status, and what the router refuses."""

from __future__ import annotations

import pytest
import yaml

from kanaria.api import AutomationStatus, ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.loop.routes import automation_policy, build_routes
from kanaria.routes import RoutesConfig

BASE = {
    "model": {"version": "v2", "uri": "file:///m/v2.onnx"},
    "strategy": {"automation": {"steps": [{"setThreshold": 0.95}]}},
    "automation": {
        "mode": "partial",
        "threshold": 0.9,
        "output": "score",
        "review": {"webhook": "http://reviews:8000/cases", "bufferSize": 5},
    },
}
SPEC = ModelDeploymentSpec.model_validate(BASE)
RAMPING = ModelDeploymentStatus(
    weights={"v1": 0, "v2": 100},
    automation=AutomationStatus(version="v2", mode="partial", threshold=0.95),
)


def test_a_ramped_version_gets_the_ramps_threshold_and_others_the_specs() -> None:
    ramped = automation_policy(SPEC, RAMPING, "v2")
    assert ramped is not None
    assert (ramped.mode, ramped.threshold, ramped.output) == ("partial", 0.95, "score")
    other = automation_policy(SPEC, RAMPING, "v1")
    assert other is not None
    assert (other.mode, other.threshold) == ("partial", 0.9)


def test_assist_in_the_spec_wins_over_a_ramp() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {**BASE, "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
         "automation": {"mode": "assist"}}
    )  # fmt: skip
    policy = automation_policy(spec, RAMPING, "v2")
    assert policy is not None
    assert policy.mode == "assist"


def test_no_automation_no_policy() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {"model": BASE["model"], "strategy": {"canary": {"steps": [{"setWeight": 10}]}}}
    )
    assert automation_policy(spec, RAMPING, "v2") is None


def test_the_routes_document_carries_policies_and_sinks_and_round_trips() -> None:
    urls = {"v1": "http://127.0.0.1:9001", "v2": "http://127.0.0.1:9002"}
    routes = build_routes("fraud", SPEC, RAMPING, urls, {"v1": True, "v2": True})
    assert routes is not None
    model = routes.models["fraud"]
    v2 = model.versions["v2"].automation
    assert v2 is not None
    assert v2.header() == "partial;0.95;output=score"
    assert model.review is not None
    assert str(model.review.webhook) == "http://reviews:8000/cases"
    assert RoutesConfig.from_yaml(routes.to_yaml()) == routes


@pytest.mark.parametrize(
    "automation",
    [{"mode": "sometimes"}, {"mode": "partial", "threshold": 1.5}],
)
def test_the_router_refuses_a_bad_policy(automation: dict[str, object]) -> None:
    version = {"url": "http://127.0.0.1:9001", "weight": 100, "automation": automation}
    text = yaml.safe_dump({"models": {"fraud": {"versions": {"v1": version}}}})
    with pytest.raises(ValueError, match="automation"):
        RoutesConfig.from_yaml(text)
