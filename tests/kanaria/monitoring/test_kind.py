"""The kind path: it cannot run here (no container engine), so test what can be.

kind-config.yaml is checked against the shape of kind's Cluster v1alpha4 API
(unknown fields rejected, as kind does), the scripts pass shellcheck, and
kind-up.sh stops with a clear message when a tool is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from kanaria.api import parse_model_deployment
from tests.support.procs import require_binary

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = [ROOT / "scripts" / n for n in ("kind-up.sh", "kind-down.sh", "lint-dockerfiles.sh")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortMapping(_Strict):
    containerPort: int = Field(ge=1, le=65535)
    hostPort: int = Field(ge=0, le=65535)
    listenAddress: str = "0.0.0.0"
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class Mount(_Strict):
    hostPath: str
    containerPath: str
    readOnly: bool = False


class Node(_Strict):
    role: Literal["control-plane", "worker"]
    image: str | None = None
    labels: dict[str, str] = {}
    extraMounts: list[Mount] = []
    extraPortMappings: list[PortMapping] = []
    kubeadmConfigPatches: list[str] = []


class Cluster(_Strict):
    """The fields of sigs.k8s.io/kind/pkg/apis/config/v1alpha4.Cluster that we may use."""

    kind: Literal["Cluster"]
    apiVersion: Literal["kind.x-k8s.io/v1alpha4"]
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    nodes: list[Node]
    featureGates: dict[str, bool] = {}
    runtimeConfig: dict[str, str] = {}
    kubeadmConfigPatches: list[str] = []
    containerdConfigPatches: list[str] = []


def test_kind_config_is_a_valid_cluster_v1alpha4_document() -> None:
    cluster = Cluster.model_validate(yaml.safe_load((ROOT / "kind-config.yaml").read_text()))
    roles = [n.role for n in cluster.nodes]
    assert roles.count("control-plane") == 1
    assert "worker" in roles
    host_ports = [p.hostPort for n in cluster.nodes for p in n.extraPortMappings]
    assert len(host_ports) == len(set(host_ports))
    assert all(p.listenAddress == "127.0.0.1" for n in cluster.nodes for p in n.extraPortMappings)


def test_kind_config_check_rejects_a_field_kind_does_not_know() -> None:
    doc = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    doc["nodes"][0]["rol"] = "worker"
    with pytest.raises(ValueError, match="rol"):
        Cluster.model_validate(doc)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_shellcheck(script: Path) -> None:
    shellcheck = require_binary("shellcheck", "lints the kind and lint scripts")
    result = subprocess.run(
        [shellcheck, "--severity=style", str(script)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


def _run_kind_up(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """kind-up.sh with a PATH of bash and dirname only: no container engine, no kind."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = subprocess.run(
            ["bash", "-c", f"command -v {tool}"], capture_output=True, text=True, check=True
        )
        (bin_dir / tool).symlink_to(found.stdout.strip())
    return subprocess.run(
        [str(bin_dir / "bash"), str(ROOT / "scripts" / "kind-up.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_kind_up_names_the_missing_tool(tmp_path: Path) -> None:
    env = {"CONTAINER_ENGINE": "docker", "SAMPLE": "kind-config.yaml", "DEMO_MODELS": "0"}
    result = _run_kind_up(tmp_path, env)
    assert result.returncode == 1
    assert "docker not found on PATH" in result.stderr


def test_kind_up_rejects_a_bad_monitoring_flag_before_doing_anything(tmp_path: Path) -> None:
    result = _run_kind_up(tmp_path, {"MONITORING": "yes"})
    assert result.returncode == 1
    assert "MONITORING must be 0 or 1, not 'yes'" in result.stderr


def test_kind_up_rejects_a_missing_sample(tmp_path: Path) -> None:
    result = _run_kind_up(tmp_path, {"SAMPLE": "nope.yaml", "DEMO_MODELS": "0"})
    assert result.returncode == 1
    assert "sample nope.yaml not found" in result.stderr


def test_kind_up_asks_for_the_venv_when_demo_models_need_it(tmp_path: Path) -> None:
    result = _run_kind_up(tmp_path, {"PYTHON": str(tmp_path / "no-python")})
    assert result.returncode == 1
    assert "no-python not found: run make setup (or DEMO_MODELS=0)" in result.stderr


def test_make_passes_monitoring_to_kind_up() -> None:
    result = subprocess.run(
        ["make", "-n", "kind-up", "MONITORING=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MAKEFLAGS": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 'MONITORING="1" bash scripts/kind-up.sh' in result.stdout


def test_kind_demo_points_the_sample_at_generated_models(tmp_path: Path) -> None:
    out = tmp_path / "sample.yaml"
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "scripts" / "kind_demo.py"),
            "--models-dir", str(tmp_path / "models"),
            "--sample", str(ROOT / "manifests" / "samples" / "canary.yaml"),
            "--url-base", "http://kanaria-demo-models.ml.svc:8000/",
            "--out", str(out),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    name, patch_text = result.stdout.splitlines()
    sample = parse_model_deployment(out.read_text(), str(out))  # valid for kanaria.api
    assert sample.metadata.name == name
    model = sample.spec.model
    assert model.version == "v1"
    assert model.uri == "http://kanaria-demo-models.ml.svc:8000/v1.onnx"
    v1 = (tmp_path / "models" / "v1.onnx").read_bytes()
    assert model.sha256 == hashlib.sha256(v1).hexdigest()
    patch = json.loads(patch_text)["spec"]["model"]
    v2 = (tmp_path / "models" / "v2.onnx").read_bytes()
    assert patch == {
        "version": "v2",
        "uri": "http://kanaria-demo-models.ml.svc:8000/v2.onnx",
        "sha256": hashlib.sha256(v2).hexdigest(),
    }
    assert v1 != v2
    assert len(v1) + len(v2) < 1024 * 1024  # fits one ConfigMap


def test_kind_demo_refuses_a_sample_that_is_not_a_model_deployment(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ConfigMap\nmetadata: {name: x}\n")
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "scripts" / "kind_demo.py"),
            "--models-dir", str(tmp_path / "models"), "--sample", str(bad),
            "--url-base", "http://x", "--out", str(tmp_path / "out.yaml"),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "must be one ModelDeployment" in result.stderr
    assert "Traceback" not in result.stderr
