"""``kanaria up`` says why a new version cannot start, the way the operator does for a
pod, and keeps the stable version serving."""

from __future__ import annotations

import pytest

from tests.kanaria.local.harness import Up, build_models, canary, md

pytestmark = pytest.mark.slow


def test_a_version_whose_model_does_not_load_says_why_and_the_stable_serves(up: Up) -> None:
    models = build_models(up.workdir / "models")
    up.start(md("v1", models["v1"], canary({"setWeight": 50})))
    broken = up.workdir / "models" / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    up.apply(md("v2", broken, canary({"setWeight": 50})))
    status = up.wait(
        "the reason v2 cannot start",
        lambda s: "v2 cannot start: exited with code" in (s.get("message") or ""),
    )
    assert "error" in status["message"].lower(), status["message"]
    assert status["weights"] == {"v1": 100, "v2": 0}
    assert up.command("status").stdout.count("v2 cannot start") >= 1
