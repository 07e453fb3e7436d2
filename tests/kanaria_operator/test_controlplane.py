"""The test control plane itself: pods schedule and become Ready, GC works, RBAC is on."""

from __future__ import annotations

import pytest

from tests.support import procs
from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane


def _deployment(name: str, replicas: int) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "not-pulled:1"}]},
            },
        },
    }


def test_deployment_becomes_available_on_fake_nodes(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(_deployment("web", 2), namespace=namespace)

    def available() -> bool:
        d = control_plane.get_json("deployment", "web", "-n", namespace)
        return int(d.get("status", {}).get("availableReplicas") or 0) == 2

    procs.wait_until(available, 90, "Deployment web to have 2 available replicas", 0.5)
    pods = control_plane.get_json("pods", "-n", namespace)["items"]
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    assert all(p["status"]["phase"] == "Running" for p in pods)


def test_garbage_collector_removes_owned_objects(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = control_plane.get_json("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "child",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
                ],
            },
        },
        namespace=namespace,
    )
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)

    def gone() -> bool:
        r = control_plane.kubectl("get", "configmap", "child", "-n", namespace, check=False)
        return r.returncode != 0 and "NotFound" in r.stderr

    procs.wait_until(gone, 60, "the garbage collector to delete the child", 0.5)


def test_rbac_is_enforced(control_plane: ControlPlane, namespace: str) -> None:
    r = control_plane.kubectl(
        "auth", "can-i", "list", "secrets", "-n", namespace, "--as", "nobody",
        check=False,
    )  # fmt: skip
    assert r.stdout.strip() == "no"


def test_version_is_stamped(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.36' in out
