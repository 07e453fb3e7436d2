"""Loading (path, file://, http://, --sha256), readiness, fatal load errors, SIGTERM drain,
chaos flags and settings errors, through the real `kanaria serve-model` process."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.kanaria_server.conftest import MODEL_NAME, metric_value, serve
from tests.support.procs import free_port, kanaria, start, wait_until

BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.1] * 64}]}


def run_to_exit(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kanaria(*args), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    ("make", "flags", "message"),
    [
        (lambda d: d / "absent.onnx", [], "model file not found"),
        (lambda d: (d / "bad.onnx").write_bytes(b"not onnx") and d / "bad.onnx", [],
         "is not a loadable ONNX model"),
        (lambda d: d / "m.onnx", ["--sha256", "0" * 64], "refusing to serve a different file"),
        (lambda d: d / "m.onnx", ["--reference", "/nonexistent/p.json"],
         "reference profile file not found"),
        (lambda d: Path("ftp://host/m.onnx"), [], "unsupported model URI scheme 'ftp'"),
        (lambda d: d / "m.onnx", ["--log-predictions", "1", "--prediction-log", "/nonexistent/p"],
         "cannot open prediction log /nonexistent/p"),
    ],
    ids=["missing", "corrupt", "sha256-mismatch", "missing-profile", "bad-scheme", "bad-log"],
)  # fmt: skip
def test_unloadable_model_exits_2_with_a_clear_message(
    mlp_path: Path, tmp_path: Path, make: object, flags: list[str], message: str
) -> None:
    (tmp_path / "m.onnx").write_bytes(mlp_path.read_bytes())
    model = make(tmp_path)  # type: ignore[operator]
    done = run_to_exit(
        "serve-model", "--model", str(model), "--name", "m", "--port", str(free_port()), *flags
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "kanaria serve-model: cannot serve model" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "m.onnx"], "--name (KANARIA_NAME): Field required"),
        (["--model", "m.onnx", "--name", "m", "--sha256", "abc"], "--sha256"),
        (["--model", "m.onnx", "--name", "m", "--chaos-error-rate", "2"], "--chaos-error-rate"),
        (["--model", "m.onnx", "--name", "m", "--max-batch-size", "0"], "--max-batch-size"),
    ],
)
def test_invalid_settings_exit_2(flags: list[str], message: str) -> None:
    done = run_to_exit("serve-model", *flags)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_settings_from_environment(mlp_path: Path, log_dir: Path) -> None:
    port = free_port()
    env = {"KANARIA_MODEL": str(mlp_path), "KANARIA_NAME": "envmodel", "KANARIA_PORT": str(port),
           "KANARIA_VERSION": "v7"}  # fmt: skip
    proc = start(kanaria("serve-model"), log_dir, "env", env=env)
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/v2/models/envmodel/versions/v7/ready", 90)
    finally:
        assert proc.stop() == 0


def test_file_uri_and_matching_sha256(mlp_path: Path, log_dir: Path) -> None:
    digest = hashlib.sha256(mlp_path.read_bytes()).hexdigest()
    with serve(f"file://{mlp_path}", log_dir, "--sha256", digest) as server:
        assert httpx.post(server.infer_url(), json=BODY).status_code == 200


def test_http_model_is_live_but_not_ready_until_loaded(
    model_http: tuple[str, threading.Event], log_dir: Path
) -> None:
    base, gate = model_http
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(
        kanaria("serve-model", "--model", f"{base}/m.onnx", "--name", MODEL_NAME,
                "--port", str(port)),
        log_dir, "http-model",
    )  # fmt: skip
    try:
        proc.wait_http(f"{url}/v2/health/live", 90)
        ready = httpx.get(f"{url}/v2/health/ready")
        assert ready.status_code == 503
        assert "loading and warming up" in ready.json()["error"]
        assert httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=BODY).status_code == 503
        assert metric_value(httpx.get(f"{url}/metrics").text, "kanaria_server_ready") == 0
        gate.set()
        proc.wait_http(f"{url}/v2/health/ready", 60)
        assert httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=BODY).status_code == 200
        assert metric_value(httpx.get(f"{url}/metrics").text, "kanaria_server_ready") == 1
    finally:
        assert proc.stop() == 0


def test_http_model_not_found_exits_2(model_http: tuple[str, threading.Event]) -> None:
    base, _ = model_http
    done = run_to_exit("serve-model", "--model", f"{base}/missing.onnx", "--name", "m",
                       "--port", str(free_port()))  # fmt: skip
    assert done.returncode == 2
    assert "HTTP 404" in done.stderr


def test_sigterm_drains_in_flight_requests(mlp_path: Path, log_dir: Path) -> None:
    with serve(mlp_path, log_dir, "--chaos-latency-ms", "1500") as server:
        results: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: results.append(httpx.post(server.infer_url(), json=BODY, timeout=30))
        )
        thread.start()
        wait_until(
            lambda: metric_value(server.metrics(), "kanaria_server_inflight_requests") == 1,
            30,
            "the slow request to be in flight",
        )
        server.proc.signal(signal.SIGTERM)
        thread.join(30)
        assert results[0].status_code == 200
        assert server.proc.popen.wait(30) == 0


def test_chaos_error_rate_injects_500s(mlp_path: Path, log_dir: Path) -> None:
    with serve(mlp_path, log_dir, "--chaos-error-rate", "1") as server:
        r = httpx.post(server.infer_url(), json=BODY)
        assert r.status_code == 500
        assert r.json() == {"error": "injected failure (chaos_error_rate)"}
        text = server.metrics()
        assert metric_value(text, "kanaria_server_requests_total", code="500") == 1


def test_chaos_latency_does_not_block_other_endpoints(mlp_path: Path, log_dir: Path) -> None:
    env = {"KANARIA_CHAOS_LATENCY_MS": "3000"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(
        kanaria("serve-model", "--model", str(mlp_path), "--name", "m", "--port", str(port)),
        log_dir, "chaos-latency", env=env,
    )  # fmt: skip
    try:
        proc.wait_http(f"{url}/v2/health/ready", 90)
        done = threading.Event()

        def slow() -> None:
            httpx.post(f"{url}/v2/models/m/infer", json=BODY, timeout=30)
            done.set()

        threading.Thread(target=slow, daemon=True).start()
        wait_until(
            lambda: (
                metric_value(httpx.get(f"{url}/metrics").text, "kanaria_server_inflight_requests")
                == 1
            ),
            30,
            "the delayed request",
        )
        # while the delayed infer waits, the event loop still answers
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        assert not done.is_set()
        done.wait(30)
    finally:
        proc.stop()


def test_python_m_kanaria_server_serves(mlp_path: Path, log_dir: Path) -> None:
    port = free_port()
    proc = start(
        [sys.executable, "-m", "kanaria_server", "--model", str(mlp_path), "--name", "pm",
         "--port", str(port)],
        log_dir, "python-m",
    )  # fmt: skip
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/v2/models/pm/ready", 90)
        r = httpx.post(f"http://127.0.0.1:{port}/v2/models/pm/infer", json=BODY)
        probs = np.asarray(r.json()["outputs"][0]["data"])
        assert abs(probs.sum() - 1) < 1e-5
    finally:
        assert proc.stop() == 0
