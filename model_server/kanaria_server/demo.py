"""A short tour of the model server: ``python -m kanaria_server.demo``.

Generates an example classifier into a temporary directory, starts
``kanaria serve-model`` on a free port, sends a few requests (metadata, a JSON
prediction, a binary-tensor prediction, a caller mistake, a delayed label),
prints the answers and a few metrics, then stops the server. It finishes by
itself and leaves nothing behind.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from kanaria.modelgen import mlp_classifier

NAME = "demo-classifier"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _show(title: str, response: httpx.Response, doc: Any = None) -> None:
    print(f"\n$ {title}\n  -> HTTP {response.status_code}")
    body = response.json() if doc is None else doc
    text = json.dumps(body)
    print("     " + (text if len(text) <= 400 else text[:400] + " ..."))


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kanaria serve-model exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("kanaria serve-model did not become ready")


def tour(url: str) -> None:
    rng = np.random.default_rng(0)
    _show(f"GET {url}/v2/models/{NAME}", httpx.get(f"{url}/v2/models/{NAME}"))
    rows = rng.standard_normal((2, 16)).round(3)
    body = {"id": "demo-1", "inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP32",
                                        "data": rows.ravel().tolist()}]}  # fmt: skip
    r = httpx.post(f"{url}/v2/models/{NAME}/infer", json=body)
    _show(f"POST /v2/models/{NAME}/infer (JSON, 2 rows, id demo-1)", r)
    probs = np.asarray(r.json()["outputs"][0]["data"]).reshape(2, 4)
    print(f"     predicted classes: {probs.argmax(axis=1).tolist()}")

    x = rng.standard_normal((1, 16)).astype(np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()  # fmt: skip
    r = httpx.post(
        f"{url}/v2/models/{NAME}/infer",
        content=head + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    n = int(r.headers["inference-header-content-length"])
    values = np.frombuffer(r.content[n:], dtype="<f4").round(4).tolist()
    _show("POST infer with binary tensors (Inference-Header-Content-Length)", r,
          {**json.loads(r.content[:n]), "binary output decoded": values})  # fmt: skip

    bad = {"inputs": [{"name": "input", "shape": [1, 15], "datatype": "FP32", "data": [0] * 15}]}
    _show("POST infer with a wrong shape (a caller mistake)", httpx.post(
        f"{url}/v2/models/{NAME}/infer", json=bad))  # fmt: skip

    label = int(probs.argmax(axis=1)[0])
    feedback = [{"id": "demo-1", "label": [label, label]}, {"id": "never-seen", "label": 1}]
    _show("POST /feedback (delayed labels for request demo-1)",
          httpx.post(f"{url}/v2/models/{NAME}/feedback", json=feedback))  # fmt: skip

    metrics = httpx.get(f"{url}/metrics").text
    wanted = (
        "kanaria_server_requests_total",
        "kanaria_feedback_total",
        "kanaria_output_class_total",
    )
    print("\n$ GET /metrics (a few series)")
    for line in metrics.splitlines():
        if line.startswith(wanted):
            print("     " + line)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kanaria-demo-") as tmp:
        model = mlp_classifier(Path(tmp) / "classifier.onnx", layers=(16, 32, 4), seed=42)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable, "-m", "kanaria", "serve-model", "--model", str(model),
            "--name", NAME, "--version", "v1", "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
        print(f"Generated {model.name} (16 features -> 4 classes); starting:\n  kanaria "
              + " ".join(cmd[3:]))  # fmt: skip
        proc = subprocess.Popen(cmd)
        try:
            _wait_ready(url, proc)
            tour(url)
        finally:
            proc.terminate()
            code = proc.wait(30)
        print(f"\nServer stopped (exit code {code}). Done.")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
