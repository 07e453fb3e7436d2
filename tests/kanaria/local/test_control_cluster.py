"""``kanaria status|promote|...`` in cluster mode against a real kube-apiserver.

The verbs only set the ``kanaria.io/command`` annotation (the operator, tested in
tests/kanaria_operator, turns it into an engine observation) and ``status``
renders the object's status; both are checked here on a real API server.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.controlplane import REPO, ControlPlane
from tests.support.procs import kanaria

pytestmark = pytest.mark.controlplane

CRD = REPO / "manifests" / "crds" / "modeldeployments.kanaria.io.yaml"


def _md(name: str) -> dict[str, object]:
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"version": "v2", "uri": "https://models.example/fraud-v2.onnx"},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
            "analysis": {
                "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.99}]
            },
        },
    }


def _cli(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        kanaria(*args, "--kubeconfig", str(cp.kubeconfig)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_verbs_annotate_and_status_renders_the_object(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", str(CRD))
    control_plane.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", "crd/modeldeployments.kanaria.io"
    )
    control_plane.apply(_md("fraud"), namespace=namespace)

    result = _cli(control_plane, "promote", "fraud", "--full", "-n", namespace, "--no-wait")
    assert result.returncode == 0, result.stderr
    obj = control_plane.get_json("modeldeployments.kanaria.io", "fraud", "-n", namespace)
    verb, nonce = obj["metadata"]["annotations"]["kanaria.io/command"].split()
    assert verb == "promote-full"
    assert nonce in result.stdout
    assert obj["spec"]["model"]["version"] == "v2"  # spec untouched

    status = {
        "phase": "Progressing",
        "stable": {"version": "v1", "uri": "https://models.example/fraud-v1.onnx"},
        "candidate": {"version": "v2", "uri": "https://models.example/fraud-v2.onnx"},
        "strategy": "canary",
        "stage": "Steps",
        "currentStep": 1,
        "weights": {"v1": 80, "v2": 20},
    }
    control_plane.kubectl(
        "patch", "modeldeployments.kanaria.io", "fraud", "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    shown = _cli(control_plane, "status", "fraud", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert "Progressing" in shown.stdout
    assert "canary: 1/2 steps done" in shown.stdout
    assert " 20%" in shown.stdout

    missing = _cli(control_plane, "abort", "nosuch", "-n", namespace, "--no-wait")
    assert missing.returncode == 1
    assert f"ModelDeployment {namespace}/nosuch: not found" in missing.stderr
    assert "Traceback" not in missing.stderr
