"""Input drift on the stable version calls the retraining webhook (real HTTP receiver)."""

from __future__ import annotations

import subprocess
from datetime import datetime

import numpy as np
import pytest

from kanaria.local.traffic import TrafficGenerator
from tests.kanaria.local.harness import NAME, WIDTH, Up, build_models, canary, md
from tests.kanaria.webhook_receiver import Receiver
from tests.support.procs import kanaria, wait_until

pytestmark = pytest.mark.slow


def test_drift_on_the_stable_version_calls_the_webhook(up: Up) -> None:
    models = build_models(up.workdir / "models")
    sample = up.workdir / "reference.npy"
    np.save(sample, np.random.default_rng(0).normal(size=(2000, WIDTH)).astype(np.float32))
    profile = up.workdir / "v1.profile.json"
    subprocess.run(
        kanaria("profile", "--model", str(models["v1"]), "--data", str(sample), "-o", str(profile)),
        check=True,
        capture_output=True,
    )
    with Receiver() as receiver:
        document = md("v1", models["v1"], canary({"setWeight": 50}))
        document["spec"]["model"]["referenceProfile"] = str(profile)
        document["spec"]["retraining"] = {
            "metric": "inputDrift",
            "threshold": 0.2,
            "duration": "2s",
            "webhook": {"url": receiver.url},
        }
        up.start(document)
        traffic = TrafficGenerator(up.url, NAME, WIDTH, rate=25, workers=4, shift=3.0).start()
        try:
            status = up.wait(
                "DriftDetected",
                lambda s: any(
                    c["type"] == "DriftDetected" and c["status"] == "True"
                    for c in s.get("conditions", [])
                ),
            )
            wait_until(lambda: bool(receiver.bodies), 30, "the webhook call")
        finally:
            traffic.stop()
    body = receiver.bodies[0]
    # the payload the operator sends too (tests/kanaria_operator/test_retraining_webhook.py)
    assert set(body) == {
        "apiVersion", "kind", "model", "namespace", "version", "uri",
        "metric", "value", "threshold", "since", "time",
    }  # fmt: skip
    assert body["apiVersion"] == "kanaria.io/v1alpha1"
    assert body["kind"] == "RetrainRequested"
    assert body["model"] == NAME
    assert body["namespace"] is None  # no namespace outside Kubernetes
    assert body["version"] == "v1"
    assert body["uri"] == status["stable"]["uri"]
    assert body["metric"] == "inputDrift"
    assert body["value"] > 0.2
    assert body["threshold"] == 0.2
    assert datetime.fromisoformat(body["since"]) < datetime.fromisoformat(body["time"])
    assert status["phase"] == "Healthy"  # drift asks for a new model; it does not roll back
