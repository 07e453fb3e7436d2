"""The CRD is generated from kanaria.api, structural, documented, and committed as generated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanaria.api import ROLLOUT_STAGES
from kanaria.crd import CRD_PATH, crd, crd_yaml

ROOT = Path(__file__).resolve().parents[2]


def _schema() -> dict[str, Any]:
    version = crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, child in node.get("properties", {}).items():
        out.extend(_walk(child, f"{path}.{name}"))
    if "items" in node:
        out.extend(_walk(node["items"], f"{path}[]"))
    if isinstance(node.get("additionalProperties"), dict):
        out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def test_committed_crd_is_the_generated_one() -> None:
    committed = (ROOT / CRD_PATH).read_text(encoding="utf-8")
    assert committed == crd_yaml(), "the CRD is stale: run `make crd` and commit the result"


def test_kanaria_crd_prints_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kanaria", "crd"], capture_output=True, text=True, check=True
    ).stdout
    assert yaml.safe_load(out) == crd()


def test_kanaria_crd_reports_an_unwritable_output(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "crd.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "kanaria", "crd", "-o", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"kanaria crd: cannot write {target}")
    assert "Traceback" not in result.stderr


def test_names_and_subresources() -> None:
    c = crd()
    assert c["apiVersion"] == "apiextensions.k8s.io/v1"
    assert c["metadata"]["name"] == "modeldeployments.kanaria.io"
    names = c["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "ModelDeployment",
        "modeldeployments",
        ["mdep"],
    )
    version = c["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [col["name"] for col in version["additionalPrinterColumns"]]
    assert columns == ["Stable", "Candidate", "Strategy", "Phase", "Weight", "Step", "Age"]


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        text = yaml.safe_dump(node)
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "nullable", "title"):
            assert f"{banned}:" not in text.split("properties:")[0], (path, banned)
        assert "type" in node, path
        if node["type"] == "object" and "properties" not in node and path != ".metadata":
            assert "additionalProperties" in node or node.get(
                "x-kubernetes-preserve-unknown-fields"
            ), path
        assert not isinstance(node.get("exclusiveMinimum"), (int, float)) or isinstance(
            node.get("exclusiveMinimum"), bool
        ), path


def test_every_spec_and_status_field_is_described() -> None:
    schema = _schema()
    for root in ("spec", "status"):
        for path, node in _walk(schema["properties"][root], root):
            if path.endswith("{}") or path.endswith("[]"):
                continue
            assert node.get("description"), f"{path} has no description"


def test_cel_costs_are_bounded() -> None:
    """Every list and string reached by a CEL rule is bounded, so the API server can
    estimate the rule cost (unbounded ones make it reject the CRD)."""
    for path, node in _walk(_schema()["properties"]["spec"], "spec"):
        if node["type"] == "array":
            assert "maxItems" in node, path
        if node["type"] == "string" and "enum" not in node:
            assert "maxLength" in node, path


def _rules() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path, node in _walk(_schema()["properties"]["spec"], "spec"):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"].startswith("spec"), rule
            found.setdefault(path, []).append(rule["rule"])
    return found


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("spec.strategy", "has(self.canary)"),
        ("spec.strategy.canary", "isSorted()"),
        ("spec.strategy.canary.steps[]", "has(self.setWeight)"),
        ("spec.analysis", "duration(self.interval)"),
        ("spec.analysis.metrics[]", "self.min < self.max"),
        ("spec.analysis.metrics[]", "has(self.builtin) != has(self.query)"),
        ("spec.strategy.shadow", "graduateTo != 'canary'"),
        ("spec", "self.strategy.shadow.graduateTo != 'none'"),
        ("spec.router.stickyKey", "has(self.header)"),
    ],
)
def test_cross_field_rules_are_cel(path: str, needle: str) -> None:
    assert any(needle in r for r in _rules().get(path, [])), _rules().get(path)


def test_validation_constraints_and_defaults_are_in_the_schema() -> None:
    spec = _schema()["properties"]["spec"]
    step = spec["properties"]["strategy"]["properties"]["canary"]["properties"]["steps"]
    weight = step["items"]["properties"]["setWeight"]
    assert (weight["minimum"], weight["maximum"]) == (0, 100)
    interval = spec["properties"]["analysis"]["properties"]["interval"]
    assert interval["default"] == "30s"
    assert interval["pattern"].startswith("^(")
    assert spec["properties"]["replicas"]["default"] == 1
    assert spec["properties"]["analysis"]["default"] == {}
    assert spec["required"] == ["model", "strategy"]
    metrics = spec["properties"]["analysis"]["properties"]["metrics"]
    assert metrics["x-kubernetes-list-type"] == "map"
    assert metrics["x-kubernetes-list-map-keys"] == ["name"]
    job = spec["properties"]["retraining"]["properties"]["jobTemplate"]
    assert job["x-kubernetes-preserve-unknown-fields"] is True
    assert "default" not in yaml.safe_dump(_schema()["properties"]["status"])


def test_gate_stages_are_the_engine_stage_names() -> None:
    """``metrics[].stages`` takes exactly the names ``status.stage`` shows, each once."""
    spec = _schema()["properties"]["spec"]
    gate = spec["properties"]["analysis"]["properties"]["metrics"]["items"]
    stages = gate["properties"]["stages"]
    status_stage = _schema()["properties"]["status"]["properties"]["stage"]
    assert stages["items"]["enum"] == status_stage["enum"] == list(ROLLOUT_STAGES)
    assert stages["x-kubernetes-list-type"] == "set"  # the API server refuses duplicates
    assert (stages["minItems"], stages["maxItems"]) == (1, len(ROLLOUT_STAGES))
    assert "stages" not in gate.get("required", [])
