"""Fixtures of the model-server tests: generated models and real `kanaria serve-model` processes.

Servers are started through the real CLI on 127.0.0.1 (tests/support/procs.py)
and shared per module or session where the tests do not interfere, to keep the
suite fast on a loaded machine.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kanaria.modelgen import mlp_classifier
from tests.kanaria_server.models import gather_model, typed_identity
from tests.support.procs import Process, free_port, kanaria, running

MODEL_NAME = "iris"


@dataclass
class Server:
    """A running model server."""

    proc: Process
    url: str
    name: str
    version: str

    def infer_url(self, version: bool = False) -> str:
        v = f"/versions/{self.version}" if version else ""
        return f"{self.url}/v2/models/{self.name}{v}/infer"

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


@contextmanager
def serve(
    model: Path | str,
    log_dir: Path,
    *flags: str,
    name: str = MODEL_NAME,
    version: str = "1",
    log_name: str = "serve-model",
) -> Iterator[Server]:
    """Run `kanaria serve-model` until the block ends; waits for readiness."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = kanaria(
        "serve-model", "--model", str(model), "--name", name, "--version", version,
        "--port", str(port), *flags,
    )  # fmt: skip
    with running(args, log_dir, log_name, ready_url=f"{url}/v2/health/ready", timeout=90) as proc:
        yield Server(proc, url, name, version)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_path(model_dir: Path) -> Path:
    """The 64 -> 256 -> 256 -> 10 softmax classifier (dynamic batch)."""
    return mlp_classifier(model_dir / "mlp.onnx", layers=(64, 256, 256, 10), seed=3)


@pytest.fixture(scope="session")
def typed_path(model_dir: Path) -> Path:
    return typed_identity(model_dir / "typed.onnx")


@pytest.fixture(scope="session")
def gather_path(model_dir: Path) -> Path:
    return gather_model(model_dir / "gather.onnx")


@pytest.fixture(scope="session")
def mlp_server(mlp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared MLP server: small body limit (413 tests) and a short batch delay."""
    logs = tmp_path_factory.mktemp("mlp-server-logs")
    with serve(mlp_path, logs, "--max-body-bytes", "65536", "--max-batch-delay-ms", "5") as server:
        yield server


class _HeldModelHandler(http.server.BaseHTTPRequestHandler):
    """Serves the model bytes only once the test releases the gate."""

    model: bytes = b""
    gate = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/missing.onnx":
            self.send_error(404)
            return
        self.gate.wait(60)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.model)))
        self.end_headers()
        self.wfile.write(self.model)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def model_http(mlp_path: Path) -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server holding the MLP's bytes until the test sets the event it yields."""

    class Handler(_HeldModelHandler):
        model = mlp_path.read_bytes()
        gate = threading.Event()

    handler = Handler
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.gate
    finally:
        handler.gate.set()
        httpd.shutdown()
        httpd.server_close()
