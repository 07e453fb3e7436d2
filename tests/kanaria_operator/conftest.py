"""Fixtures for operator tests against the real control plane.

- ``installed``: the CRD and manifests/operator applied for real (session);
- ``operator_kubeconfig``: a kubeconfig holding a token of the operator's own
  ServiceAccount, so every operator test also proves the RBAC is wide enough;
- ``metrics``: the test exporter (standing in for router and model-server pods,
  which need a kubelet) scraped by a real Prometheus (session);
- ``start_operator``: runs ``python -m kanaria operator`` as a real process.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import procs
from tests.support.controlplane import REPO, ControlPlane

CRDS = REPO / "manifests" / "crds"
OPERATOR_MANIFESTS = REPO / "manifests" / "operator"
SCRAPE_INTERVAL = "500ms"


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> ControlPlane:
    """CRD + operator namespace, RBAC and Deployment, applied as a user would."""
    if not any(CRDS.glob("*.yaml")):
        pytest.fail("manifests/crds is empty: run `make crd`")
    control_plane.kubectl("apply", "-f", str(CRDS), "-f", str(OPERATOR_MANIFESTS))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/modeldeployments.kanaria.io",
    )  # fmt: skip
    return control_plane


@pytest.fixture(scope="session")
def operator_kubeconfig(installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kubeconfig authenticating as system:serviceaccount:kanaria-system:kanaria-operator."""
    token = installed.kubectl(
        "create", "token", "kanaria-operator", "-n", "kanaria-system", "--duration", "6h"
    ).stdout.strip()
    admin = yaml.safe_load(installed.kubeconfig.read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "operator"
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    return path


@dataclass
class Metrics:
    """The test exporter and the Prometheus scraping it."""

    exporter_url: str
    prometheus_url: str

    def set(self, series: list[dict[str, Any]]) -> None:
        """Replace the exported series (see tests/kanaria_operator/exporter.py)."""
        r = httpx.put(f"{self.exporter_url}/series", content=json.dumps(series), timeout=5)
        r.raise_for_status()

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        result: list[dict[str, Any]] = r.json()["data"]["result"]
        return result


@pytest.fixture(scope="session")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metrics]:
    prometheus = procs.require_binary("prometheus", "operator end-to-end tests query a real one")
    work = tmp_path_factory.mktemp("prometheus")
    exporter_port, prom_port = procs.free_port(), procs.free_port()
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "kanaria-test-exporter",
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (
        procs.running(
            [sys.executable, "-m", "tests.kanaria_operator.exporter", "--port", str(exporter_port)],
            work,
            "exporter",
            ready_url=f"http://127.0.0.1:{exporter_port}/health",
        ),
        procs.running(
            [
                prometheus,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            work,
            "prometheus",
            ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
        ),
    ):
        yield Metrics(f"http://127.0.0.1:{exporter_port}", f"http://127.0.0.1:{prom_port}")


@dataclass
class OperatorProcess:
    proc: procs.Process
    metrics_url: str
    identity: str

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples on the operator's /metrics matching ``labels``."""
        text = httpx.get(self.metrics_url, timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(
    installed: ControlPlane, operator_kubeconfig: Path, log_dir: Path
) -> Iterator[StartOperator]:
    """Start ``kanaria operator`` processes (as the operator ServiceAccount); all stopped
    at the end of the test."""
    started: list[OperatorProcess] = []

    def start(
        namespace: str,
        lease: str,
        prometheus_url: str | None = None,
        identity: str | None = None,
        wait: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> OperatorProcess:
        identity = identity or f"op-{uuid.uuid4().hex[:6]}"
        metrics_port, health_port = procs.free_port(), procs.free_port()
        args = [
            *procs.kanaria("operator"),
            "--kubeconfig", str(operator_kubeconfig),
            "--namespace", namespace,
            "--resync-interval", "1",
            "--metrics-port", str(metrics_port),
            "--health-port", str(health_port),
            "--identity", identity,
            "--lease-name", lease,
            "--lease-namespace", "kanaria-system",
            "--lease-duration", "3",
        ]  # fmt: skip
        if prometheus_url:
            args += ["--prometheus-url", prometheus_url]
        env = {"KANARIA_CHECK_MODEL_URIS": "false", **(extra_env or {})}
        proc = procs.start(args, log_dir, f"operator-{identity}", env=env)
        op = OperatorProcess(proc, f"http://127.0.0.1:{metrics_port}/metrics", identity)
        started.append(op)
        if wait:
            proc.wait_http(f"http://127.0.0.1:{health_port}/healthz", 60)
        return op

    yield start
    for op in started:
        op.proc.stop()
