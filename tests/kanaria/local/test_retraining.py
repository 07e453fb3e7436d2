"""Input drift on the stable version calls the retraining webhook (real HTTP receiver)."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from kanaria.local.traffic import TrafficGenerator
from tests.kanaria.local.harness import NAME, WIDTH, Up, build_models, canary, md
from tests.support.procs import kanaria, wait_until

pytestmark = pytest.mark.slow


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every JSON body it gets."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/retrain"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    assert body["model"] == NAME
    assert body["version"] == "v1"
    assert body["metric"] == "inputDrift"
    assert body["value"] > 0.2
    assert status["phase"] == "Healthy"  # drift asks for a new model; it does not roll back
