"""Fixtures for router tests: real test backends and real router processes on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import procs

STUB = Path(__file__).with_name("stub_backend.py")

DIFFERENT_OUTPUT = (
    '[{"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.6, 0.3, 0.1]}]'
)
"""A test backend answer whose argmax differs from the default one."""


@dataclass
class Backend:
    """A running test backend (``stub_backend.py``)."""

    name: str
    port: int
    proc: procs.Process | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/control/stats", timeout=5).json()
        return data

    def release(self) -> None:
        httpx.post(f"{self.url}/control/release", timeout=5)


BackendFactory = Callable[..., Backend]


def _start_backend(log_dir: Path, name: str, *extra: str) -> Backend:
    port = procs.free_port()
    proc = procs.start(
        [sys.executable, str(STUB), "--port", str(port), "--name", name, *extra],
        log_dir,
        f"backend-{name}-{port}",
    )
    proc.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=30)
    return Backend(name, port, proc)


def start_model_server(model: Path, version: str, logs: Path) -> Backend:
    """A real ``kanaria serve-model`` serving ``model`` as ``version`` of model ``fraud``
    (started, not yet Ready: start several, then wait for each)."""
    port = procs.free_port()
    args = procs.kanaria(
        "serve-model", "--model", str(model), "--name", "fraud",
        "--version", version, "--port", str(port), "--host", "127.0.0.1",
    )  # fmt: skip
    return Backend(version, port, procs.start(args, logs, f"serve-model-{version}"))


@contextmanager
def model_server(model: Path, logs: Path, version: str = "v1") -> Iterator[Backend]:
    """One real model server, Ready, stopped by PID afterwards."""
    server = start_model_server(model, version, logs)
    assert server.proc is not None
    try:
        server.proc.wait_http(f"{server.url}/v2/health/ready", timeout=120)
        yield server
    finally:
        server.proc.stop()


@pytest.fixture
def backend(log_dir: Path) -> Iterator[BackendFactory]:
    """Start test backends: ``backend("v1", "--delay", "0.5")``; all stopped after the test."""
    started: list[Backend] = []

    def make(name: str, *extra: str) -> Backend:
        b = _start_backend(log_dir, name, *extra)
        started.append(b)
        return b

    yield make
    for b in started:
        if b.proc is not None:
            b.proc.stop()


@pytest.fixture(scope="module")
def shared_backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Backend]]:
    """Three test backends for a whole module: v1 and v2 answer alike, v3 differently."""
    log_dir = tmp_path_factory.mktemp("shared-backends")
    started = {
        "v1": _start_backend(log_dir, "v1"),
        "v2": _start_backend(log_dir, "v2"),
        "v3": _start_backend(log_dir, "v3", "--output", DIFFERENT_OUTPUT),
    }
    yield started
    for b in started.values():
        if b.proc is not None:
            b.proc.stop()


def dead_backend(name: str) -> Backend:
    """A backend address where nothing listens (connections are refused)."""
    return Backend(name, procs.free_port(), None)


def routes(models: dict[str, dict[str, Any]]) -> str:
    """A routes document from ``{model: {versions: {v: (backend, weight)}, ...}}``."""
    doc: dict[str, Any] = {"models": {}}
    for name, spec in models.items():
        entry = dict(spec)
        entry["versions"] = {
            v: {"url": b.url, "weight": w, **({} if ready else {"ready": False})}
            for v, (b, w, *rest) in spec["versions"].items()
            for ready in [rest[0] if rest else True]
        }
        doc["models"][name] = entry
    return yaml.safe_dump(doc)


@dataclass
class RouterProc:
    """A running ``kanaria route`` process and its routes file."""

    proc: procs.Process
    port: int
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, text: str) -> None:
        """Replace the routes file atomically (write + rename), as writers should."""
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching ``labels`` (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def wait_weight(self, model: str, version: str, weight: float, timeout: float = 10) -> None:
        """Wait until the router reports ``weight`` for a version (a reload was applied)."""

        def applied() -> bool:
            got = self.metric("kanaria_router_weight_percent", model=model, version=version)
            return got == weight

        procs.wait_until(applied, timeout, f"{model}/{version} at weight {weight}")


RouterFactory = Callable[..., RouterProc]


@pytest.fixture
def router(log_dir: Path, tmp_path: Path) -> Iterator[RouterFactory]:
    """Start routers: ``router(routes_text, KANARIA_X="...")``; stopped after the test."""
    started: list[RouterProc] = []

    def make(text: str, **env: str) -> RouterProc:
        port = procs.free_port()
        config = tmp_path / f"routes-{port}.yaml"
        config.write_text(text)
        proc = procs.start(
            procs.kanaria(
                "route",
                "--config",
                str(config),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--reload-interval",
                "0.05",
            ),
            log_dir,
            f"router-{port}",
            env=env,
        )
        proc.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=60)
        r = RouterProc(proc, port, config)
        started.append(r)
        return r

    yield make
    for r in started:
        r.proc.stop()


def infer_body() -> dict[str, Any]:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}
