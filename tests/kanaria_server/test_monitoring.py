"""Input, drift and output monitoring through a real server, with a reference profile
built by the real `kanaria profile` command; and the sampled prediction log."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.kanaria_server.conftest import Server, metric_value, serve
from tests.support.procs import kanaria

WINDOW = 1000
DRIFT_THRESHOLD = 0.2
"""A PSI above 0.2 is the usual "significant shift" rule of thumb (DESIGN's sample gate)."""


@dataclass
class DriftSetup:
    server: Server
    log: Path


def rows(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 64)) + shift).astype(np.float32)


@pytest.fixture(scope="module")
def drift(mlp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftSetup]:
    work = tmp_path_factory.mktemp("drift")
    sample = work / "sample.npy"
    np.save(sample, rows(2000, seed=1))
    profile = work / "mlp.profile.json"
    done = subprocess.run(
        kanaria("profile", "--model", str(mlp_path), "--data", str(sample), "-o", str(profile)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    log = work / "predictions.jsonl"
    with serve(
        mlp_path, work, "--reference", str(profile), "--drift-window", str(WINDOW),
        "--log-predictions", "1", "--prediction-log", str(log),
        "--prediction-log-max-values", "16",
    ) as server:  # fmt: skip
        yield DriftSetup(server, log)


def send(server: Server, x: np.ndarray, request_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                    "data": [None if np.isnan(v) else float(v) for v in x.ravel()]}]
    }  # fmt: skip
    if request_id:
        body["id"] = request_id
    r = httpx.post(server.infer_url(), json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r


def psi(server: Server) -> float:
    return metric_value(server.metrics(), "kanaria_input_drift_psi", input="input")


def test_reference_distribution_keeps_psi_low_and_a_shift_raises_it(drift: DriftSetup) -> None:
    for chunk in np.split(rows(WINDOW, seed=2), 10):
        send(drift.server, chunk)
    low = psi(drift.server)
    assert low < 0.1, low
    for chunk in np.split(rows(WINDOW, shift=1.0, seed=3), 10):
        send(drift.server, chunk)
    high = psi(drift.server)
    assert high > DRIFT_THRESHOLD, high
    # and back: the sliding window forgets the shifted rows
    for chunk in np.split(rows(WINDOW, seed=4), 10):
        send(drift.server, chunk)
    assert psi(drift.server) < 0.1


def test_missing_values_and_null_outputs_are_counted(drift: DriftSetup) -> None:
    text = drift.server.metrics()
    values = metric_value(text, "kanaria_input_values_total", input="input")
    missing = metric_value(text, "kanaria_input_missing_values_total", input="input")
    nulls = metric_value(text, "kanaria_output_null_total", output="probabilities")
    x = rows(2, seed=5)
    x[0, 3] = np.nan
    x[0, 9] = np.nan
    send(drift.server, x)
    text = drift.server.metrics()
    assert metric_value(text, "kanaria_input_values_total", input="input") == values + 128
    assert metric_value(text, "kanaria_input_missing_values_total", input="input") == missing + 2
    # NaN propagates through the MLP: one output row is null
    assert metric_value(text, "kanaria_output_null_total", output="probabilities") == nulls + 1


def test_class_counts_and_confidence(drift: DriftSetup) -> None:
    text = drift.server.metrics()
    classes = metric_value(text, "kanaria_output_class_total", output="probabilities")
    confidences = metric_value(text, "kanaria_output_confidence_count", output="probabilities")
    r = send(drift.server, rows(5, seed=6))
    probs = np.asarray(r.json()["outputs"][0]["data"]).reshape(5, 10)
    top = int(np.bincount(probs.argmax(axis=1)).argmax())
    text = drift.server.metrics()
    assert metric_value(text, "kanaria_output_class_total", output="probabilities") == classes + 5
    assert metric_value(text, "kanaria_output_class_total", **{"class": str(top)}) >= 1
    assert metric_value(text, "kanaria_output_confidence_count") == confidences + 5


def test_prediction_log_lines(drift: DriftSetup) -> None:
    send(drift.server, rows(1, seed=8), request_id="logged-1")
    lines: list[dict[str, Any]] = []
    for _ in range(100):  # the log is written by a background thread: poll for the line
        lines = [json.loads(line) for line in drift.log.read_text().splitlines() if line]
        if any(line["id"] == "logged-1" for line in lines):
            break
        httpx.get(f"{drift.server.url}/v2/health/live")
    record = next(line for line in lines if line["id"] == "logged-1")
    assert record["model"] == "iris"
    assert record["version"] == "1"
    assert record["latency_ms"] > 0
    # 64 input values exceed the cap of 16: summarised; 10 output values are kept
    assert record["inputs"]["input"]["summary"] is True
    assert record["inputs"]["input"]["shape"] == [1, 64]
    assert len(record["outputs"]["probabilities"][0]) == 10


def test_profile_rejects_data_of_another_shape(mlp_path: Path, tmp_path: Path) -> None:
    sample = tmp_path / "wrong.csv"
    sample.write_text("a,b,c\n1,2,3\n4,5,6\n")
    done = subprocess.run(
        kanaria("profile", "--model", str(mlp_path), "--data", str(sample), "-o",
                str(tmp_path / "p.json")),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "rows of shape [3], the model expects [64]" in done.stderr
    assert "Traceback" not in done.stderr


def test_profile_from_csv(mlp_path: Path, tmp_path: Path) -> None:
    sample = tmp_path / "ok.csv"
    np.savetxt(sample, rows(50, seed=9), delimiter=",", header=",".join(f"f{i}" for i in range(64)))
    out = tmp_path / "p.json"
    done = subprocess.run(
        kanaria("profile", "--model", str(mlp_path), "--data", str(sample), "-o", str(out)),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["inputs"]["input"]["rows"] == 50
    assert doc["inputs"]["input"]["features"] == 64


def test_profile_errors_are_clear(mlp_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_text("not numpy")
    cases = [
        (["--data", str(bad)], "is not a numeric .npy array file"),
        (["--data", str(tmp_path / "absent.csv")], "data file not found"),
        (["--data", str(bad), "--bins", "1"], "--bins must be between 2 and 100"),
    ]
    for extra, message in cases:
        done = subprocess.run(
            kanaria("profile", "--model", str(mlp_path), "-o", str(tmp_path / "p.json"), *extra),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 2, extra
        assert message in done.stderr
        assert "Traceback" not in done.stderr
