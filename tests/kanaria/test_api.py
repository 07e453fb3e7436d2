"""The ModelDeployment models and the file loader: valid files load, and every
invalid one fails with a message naming the offending field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanaria.api import (
    Builtin,
    ManifestError,
    ModelDeployment,
    load_model_deployment,
    parse_model_deployment,
)
from kanaria.durations import format_duration, parse_duration

DESIGN_EXAMPLE = """
apiVersion: kanaria.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud, namespace: ml}
spec:
  model: {version: v2, uri: "https://models.example/fraud-v2.onnx"}
  replicas: 2
  strategy:
    canary:
      steps: [{setWeight: 5}, {pause: {duration: 60s}}, {setWeight: 25},
              {pause: {}}, {setWeight: 50}, {pause: {duration: 60s}}]
  analysis:
    interval: 30s
    failureLimit: 2
    minRequests: 50
    metrics:
      - {name: success-rate, builtin: successRate, min: 0.99}
      - {name: p99-latency, builtin: latencyP99, max: 0.25}
      - {name: drift, builtin: inputDrift, max: 0.2}
"""


def _with(strategy: str, analysis: str = "") -> str:
    return f"""
apiVersion: kanaria.io/v1alpha1
kind: ModelDeployment
metadata: {{name: m}}
spec:
  model: {{version: v1, uri: file:///m.onnx}}
  strategy: {strategy}
{analysis}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_model_deployment(text, "md.yaml")
    assert str(info.value).startswith("md.yaml: invalid ModelDeployment")
    return info.value.problems


def test_design_example_loads_with_defaults() -> None:
    md = parse_model_deployment(DESIGN_EXAMPLE)
    assert isinstance(md, ModelDeployment)
    spec = md.spec
    assert spec.strategy.kind == "canary"
    assert spec.strategy.canary is not None
    assert spec.strategy.canary.steps[3].pause is not None
    assert spec.strategy.canary.steps[3].pause.duration is None
    assert spec.analysis.interval_seconds == 30
    assert spec.analysis.inconclusiveLimit == 3
    assert spec.analysis.consecutiveErrorLimit == 4
    assert spec.analysis.metrics[1].builtin is Builtin.latencyP99
    assert spec.router.overrideHeader == "x-kanaria-version"
    assert spec.server.batching.maxBatchSize == 64


def test_load_from_file(tmp_path: Path) -> None:
    f = tmp_path / "md.yaml"
    f.write_text(DESIGN_EXAMPLE)
    assert load_model_deployment(f).metadata.name == "fraud"
    with pytest.raises(ManifestError, match="cannot read file"):
        load_model_deployment(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _with("{canary: {steps: [{setWeight: 5}, {setWeight: 50}, {setWeight: 120}]}}"),
            "spec.strategy.canary.steps[2].setWeight: must be <= 100",
        ),
        (
            _with("{canary: {steps: [{setWeight: 50}, {setWeight: 20}]}}"),
            "spec.strategy.canary.steps: steps[1].setWeight 20 is below an earlier step's 50",
        ),
        (
            _with("{canary: {steps: [{setWeight: 5, pause: {}}]}}"),
            "spec.strategy.canary.steps[0]: set exactly one of setWeight, pause, analysis "
            "(got setWeight, pause)",
        ),
        (
            _with("{canary: {steps: [{setWeight: 5}]}, blueGreen: {}}"),
            "spec.strategy: set exactly one of canary, blueGreen, shadow, automation "
            "(got canary, blueGreen)",
        ),
        (_with("{}"), "spec.strategy: set exactly one of canary, blueGreen, shadow, automation"),
        (
            _with("{canary: {steps: [{pause: {duration: 10 minutes}}]}}"),
            "spec.strategy.canary.steps[0].pause.duration: '10 minutes' does not match",
        ),
        (
            _with("{blueGreen: {scaleDownDelay: 5x}}"),
            "spec.strategy.blueGreen.scaleDownDelay: '5x' does not match",
        ),
        (
            _with("{shadow: {graduateTo: canary}}", "  analysis: {metrics: []}"),
            "spec.strategy.shadow: canary is required when graduateTo is canary",
        ),
        (
            _with("{shadow: {graduateTo: later}}"),
            "spec.strategy.shadow.graduateTo: Input should be 'canary', 'blueGreen', "
            "'automation' or 'none'",
        ),
        (
            _with(
                "{blueGreen: {}}",
                "  analysis: {metrics: [{name: sr, builtin: successRate, min: 0.9, max: 0.5}]}",
            ),
            "spec.analysis.metrics[0]: min (0.9) must be less than max (0.5)",
        ),
        (
            _with("{blueGreen: {}}", "  analysis: {metrics: [{name: sr, builtin: successRate}]}"),
            "spec.analysis.metrics[0]: set min, max or both",
        ),
        (
            _with(
                "{blueGreen: {}}",
                "  analysis: {metrics: [{name: sr, builtin: successRate, query: up, min: 1}]}",
            ),
            "spec.analysis.metrics[0]: set exactly one of builtin, query",
        ),
        (
            _with(
                "{blueGreen: {}}",
                "  analysis: {metrics: [{name: sr, builtin: successRate, min: 1, quantile: 0.5}]}",
            ),
            "spec.analysis.metrics[0]: quantile is only allowed with builtin latencyP99",
        ),
        (
            _with(
                "{blueGreen: {}}",
                "  analysis: {metrics: [{name: a, builtin: accuracy, min: 1},"
                " {name: a, builtin: accuracy, min: 1}]}",
            ),
            "spec.analysis.metrics: metrics[1].name 'a' is used twice",
        ),
        (
            _with("{blueGreen: {}}", "  analysis: {interval: 500ms}"),
            "spec.analysis.interval: must be at least 1s",
        ),
        (
            _with("{blueGreen: {}}", "  replicaz: 3"),
            "spec.replicaz: unknown field",
        ),
        (
            _with("{blueGreen: {}}", "  router: {stickyKey: {}}"),
            "spec.router.stickyKey: set header or cookie",
        ),
        (
            _with("{shadow: {}}"),
            "spec: strategy.shadow needs a gate that applies in the Mirroring stage",
        ),
        ("kind: ModelDeployment\n", "metadata: required field is missing"),
        ("- a\n- b\n", "(document): must be a mapping"),
        ("a: [\n", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "expected exactly one document, found 2"),
    ],
)
def test_invalid_files_name_the_field(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_spec_is_immutable() -> None:
    md = parse_model_deployment(DESIGN_EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        md.spec.replicas = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "s", "1d", "-5s", "5 s", "1h-2m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (300, "5m"), (7200, "2h"), (90, "90s"), (0.25, "250ms")]
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
