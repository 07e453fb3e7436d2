"""The retraining webhook caller against a real HTTP server process on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kanaria.api import ModelDeploymentSpec, ModelDeploymentStatus, Webhook
from kanaria.retraining import (
    WebhookError,
    call_webhook,
    request_retraining,
    retrain_payload,
    version_uri,
)
from kanaria.rollout import Retrain
from tests.support.procs import free_port, running

RECEIVER = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    out = open(sys.argv[2], "a")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/slow":
                time.sleep(3)
            record = {"path": self.path, "auth": self.headers.get("Authorization"),
                      "type": self.headers.get("Content-Type"), "body": json.loads(body)}
            out.write(json.dumps(record) + "\\n")
            out.flush()
            self.send_response(500 if self.path == "/fail" else 202)
            self.end_headers()
            self.wfile.write(b"boom" if self.path == "/fail" else b"queued")

    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
SPEC = ModelDeploymentSpec.model_validate(
    {
        "model": {"version": "v1", "uri": "file:///v1.onnx"},
        "strategy": {"blueGreen": {}},
        "retraining": {"threshold": 0.2},
    }
)
ACTION = Retrain(version="v1", metric="inputDrift", value=0.4, threshold=0.2, since=NOW)


@pytest.fixture
def receiver(tmp_path: Path, log_dir: Path) -> Iterator[tuple[str, Path]]:
    script = tmp_path / "receiver.py"
    script.write_text(RECEIVER)
    received = tmp_path / "received.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        [sys.executable, str(script), str(port), str(received)], log_dir, "receiver", url + "/"
    ):
        yield url, received


def _received(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_payload_and_headers_reach_the_webhook(receiver: tuple[str, Path]) -> None:
    url, received = receiver
    hook = Webhook(url=url + "/retrain", headers={"Authorization": "Bearer t0ken"})
    payload = retrain_payload("fraud", "ml", ACTION, "file:///v1.onnx", NOW)
    assert call_webhook(hook, payload) == 202
    (record,) = _received(received)
    assert record["path"] == "/retrain"
    assert record["auth"] == "Bearer t0ken"
    assert record["type"] == "application/json"
    assert record["body"] == {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "RetrainRequested",
        "model": "fraud",
        "namespace": "ml",
        "version": "v1",
        "uri": "file:///v1.onnx",
        "metric": "inputDrift",
        "value": 0.4,
        "threshold": 0.2,
        "since": "2026-01-01T12:00:00+00:00",
        "time": "2026-01-01T12:00:00+00:00",
    }


def test_refusal_is_an_error_with_the_status(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    with pytest.raises(WebhookError, match=r"answered HTTP 500: boom"):
        call_webhook(Webhook(url=url + "/fail"), {"x": 1})


def test_timeout_is_an_error(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    with pytest.raises(WebhookError, match="did not answer within 500ms"):
        call_webhook(Webhook(url=url + "/slow", timeout="500ms"), {"x": 1})


def test_unreachable_is_an_error() -> None:
    with pytest.raises(WebhookError, match="cannot call retraining webhook"):
        call_webhook(Webhook(url=f"http://127.0.0.1:{free_port()}/x", timeout="2s"), {})


# Mid-rollout: spec.model is already v2, the stable v1 drifts. The payload names v1's model.
ROLLING = ModelDeploymentSpec.model_validate(
    {
        "model": {"version": "v2", "uri": "file:///v2.onnx"},
        "strategy": {"blueGreen": {}},
        "retraining": {"threshold": 0.2},
    }
)
STATUS = ModelDeploymentStatus.model_validate(
    {
        "phase": "Progressing",
        "stable": {"version": "v1", "uri": "file:///models/v1.onnx"},
        "candidate": {"version": "v2", "uri": "file:///v2.onnx"},
        "versions": [
            {"version": "v1", "uri": "file:///models/v1.onnx", "role": "stable", "replicas": 1},
            {"version": "v2", "uri": "file:///v2.onnx", "role": "candidate", "replicas": 1},
        ],
    }
)


def _with_webhook(spec: ModelDeploymentSpec, url: str) -> ModelDeploymentSpec:
    assert spec.retraining is not None
    retraining = spec.retraining.model_copy(
        update={"webhook": Webhook(url=url, headers={"X-Token": "t"})}
    )
    return spec.model_copy(update={"retraining": retraining})


def test_the_uri_is_the_one_the_version_runs_from() -> None:
    assert version_uri(ROLLING, STATUS, "v1") == "file:///models/v1.onnx"
    assert version_uri(ROLLING, None, "v1") is None
    assert version_uri(SPEC, None, "v1") == "file:///v1.onnx"


def test_request_retraining_sends_the_one_payload_and_says_so(
    receiver: tuple[str, Path],
) -> None:
    url, received = receiver
    spec = _with_webhook(ROLLING, url + "/retrain")
    event = request_retraining("fraud", "ml", spec, STATUS, ACTION, NOW)
    assert event is not None
    assert event.type == "Normal"
    assert event.reason == "RetrainingWebhookCalled"
    assert "answered HTTP 202" in event.message
    (record,) = _received(received)
    assert record["body"] == retrain_payload("fraud", "ml", ACTION, "file:///models/v1.onnx", NOW)
    assert record["body"]["kind"] == "RetrainRequested"


def test_request_retraining_turns_a_refusal_into_a_warning(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    event = request_retraining("fraud", None, _with_webhook(SPEC, url + "/fail"), None, ACTION, NOW)
    assert event is not None
    assert event.type == "Warning"
    assert event.reason == "RetrainingWebhookFailed"
    assert "answered HTTP 500: boom" in event.message


def test_request_retraining_without_a_webhook_does_nothing() -> None:
    assert request_retraining("fraud", None, SPEC, None, ACTION, NOW) is None
