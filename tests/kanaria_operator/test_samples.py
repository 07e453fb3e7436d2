"""The manifests install, and each sample ModelDeployment yields exactly its objects.

The operator runs as a real process authenticated as its own ServiceAccount,
so these tests also prove that manifests/operator grants what it needs.
"""

from __future__ import annotations

import pytest
import yaml

from tests.kanaria_operator.conftest import CRDS, OPERATOR_MANIFESTS, StartOperator
from tests.kanaria_operator.helpers import WAIT_S, owned_objects, reasons, wait_status
from tests.support import procs
from tests.support.controlplane import REPO, ControlPlane

pytestmark = pytest.mark.controlplane

SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))
OPERATOR_SA = "system:serviceaccount:kanaria-system:kanaria-operator"


def expected_objects(name: str, version: str) -> set[tuple[str, str]]:
    return {
        ("Deployment", f"{name}-{version}"),
        ("Service", f"{name}-{version}"),
        ("Deployment", f"{name}-router"),
        ("Service", name),
        ("ConfigMap", f"{name}-routes"),
        ("ServiceAccount", f"{name}-router"),
        ("Role", f"{name}-router"),
        ("RoleBinding", f"{name}-router"),
    }


def test_crds_and_operator_manifests_pass_server_side_dry_run(installed: ControlPlane) -> None:
    out = installed.kubectl(
        "apply", "--dry-run=server", "-f", str(CRDS), "-f", str(OPERATOR_MANIFESTS)
    ).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/modeldeployments.kanaria.io" in out
    assert "deployment.apps/kanaria-operator" in out


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "modeldeployments.kanaria.io", "yes"),
        ("patch", "modeldeployments.kanaria.io/status", "yes"),
        ("update", "modeldeployments.kanaria.io", "no"),  # spec belongs to users and GitOps
        ("create", "deployments.apps", "yes"),
        ("update", "deployments.apps", "no"),
        ("get", "secrets", "no"),
        ("create", "pods", "no"),
        ("create", "jobs.batch", "yes"),
        ("create", "events", "yes"),
        ("create", "clusterroles.rbac.authorization.k8s.io", "no"),
    ],
)
def test_operator_rbac_is_as_wide_as_needed(
    installed: ControlPlane, verb: str, resource: str, allowed: str
) -> None:
    r = installed.kubectl(
        "auth", "can-i", verb, resource, "-n", "default", "--as", OPERATOR_SA, check=False
    )
    assert r.stdout.strip() == allowed


def test_each_sample_creates_exactly_its_objects_and_gc_removes_them(
    installed: ControlPlane, namespace: str, start_operator: StartOperator
) -> None:
    start_operator(namespace, lease=f"samples-{namespace}")
    names: dict[str, str] = {}
    for sample in SAMPLES:
        doc = yaml.safe_load(sample.read_text())
        names[doc["metadata"]["name"]] = doc["spec"]["model"]["version"]
        installed.kubectl("apply", "-n", namespace, "-f", str(sample))
    assert len(names) == len(SAMPLES)  # one ModelDeployment per sample, names unique

    for name, version in names.items():
        st = wait_status(
            installed, namespace, name, lambda s: s.get("phase") == "Healthy", "Healthy"
        )
        assert st["weights"] == {version: 100}
        assert st["observedGeneration"] == 1
        assert owned_objects(installed, namespace, name) == expected_objects(name, version)
        assert "Deployed" in reasons(installed, namespace, name)
        for kind, obj_name in expected_objects(name, version):
            meta = installed.get_json(kind.lower(), obj_name, "-n", namespace)["metadata"]
            (ref,) = meta["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["controller"]) == ("ModelDeployment", name, True)
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "kanaria-operator"

    # A Deployment deleted behind the operator's back is put back on the next pass.
    installed.kubectl("delete", "deployment", "fraud-canary-v1", "-n", namespace)
    procs.wait_until(
        lambda: ("Deployment", "fraud-canary-v1") in owned_objects(installed, namespace,
                                                                   "fraud-canary"),
        WAIT_S, "the operator to recreate fraud-canary-v1", 0.5,
    )  # fmt: skip

    table = installed.kubectl("get", "mdep", "-n", namespace).stdout
    assert "fraud-canary" in table
    assert "Healthy" in table

    for name in names:
        installed.kubectl("delete", "modeldeployment", name, "-n", namespace, "--wait=true")

    def all_gone() -> bool:
        return all(not owned_objects(installed, namespace, n) for n in names)

    procs.wait_until(all_gone, WAIT_S, "garbage collection of every owned object", 0.5)

    def replicasets_gone_pods_terminating() -> bool:
        selector = "kanaria.io/model-deployment"
        if installed.get_json("replicasets", "-n", namespace, "-l", selector)["items"]:
            return False
        pods = installed.get_json("pods", "-n", namespace, "-l", selector)["items"]
        return all(p["metadata"].get("deletionTimestamp") for p in pods)

    procs.wait_until(
        replicasets_gone_pods_terminating, WAIT_S, "ReplicaSets and Pods to be collected", 0.5
    )
