"""Small helpers shared by the operator's control-plane tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from tests.support import procs
from tests.support.controlplane import ControlPlane

OWNED_KINDS = "deployments,services,configmaps,serviceaccounts,roles,rolebindings,jobs"
WAIT_S = 120.0
"""Upper bound for anything to happen on the shared, loaded test machine (not a timing
assertion: passing tests finish as soon as the condition holds)."""


def get_md(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    md: dict[str, Any] = cp.get_json("modeldeployment", name, "-n", namespace)
    return md


def status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    st: dict[str, Any] = get_md(cp, namespace, name).get("status") or {}
    return st


def wait_status(
    cp: ControlPlane,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = WAIT_S,
) -> dict[str, Any]:
    """Wait until ``check(status)`` holds; returns that status."""
    seen: dict[str, Any] = {}

    def ok() -> bool:
        seen.clear()
        seen.update(status(cp, namespace, name))
        return check(seen)

    try:
        procs.wait_until(ok, timeout, f"{name}: {what}", interval=0.5)
    except TimeoutError as exc:
        brief = {k: seen.get(k) for k in ("phase", "message", "currentStep", "weights", "mirror")}
        pods = cp.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        recent = seen.get("measurements", [])[-4:]
        raise TimeoutError(
            f"{exc}\nlast status: {brief}\nmeasurements: {recent}\npods:\n{pods}"
        ) from None
    return dict(seen)


def owned_objects(cp: ControlPlane, namespace: str, name: str) -> set[tuple[str, str]]:
    """(kind, name) of every object labelled as belonging to ModelDeployment ``name``."""
    items = cp.get_json(OWNED_KINDS, "-n", namespace, "-l", f"kanaria.io/model-deployment={name}")
    return {(i["kind"], i["metadata"]["name"]) for i in items["items"]}


def events(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.get_json(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return sorted(items, key=lambda e: e.get("lastTimestamp") or "")


def reasons(cp: ControlPlane, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in events(cp, namespace, name)]


def command(cp: ControlPlane, namespace: str, name: str, verb: str) -> str:
    """Send a manual command the way `kanaria promote ...` does on a cluster."""
    nonce = uuid.uuid4().hex[:12]
    cp.kubectl(
        "annotate", "--overwrite", "modeldeployment", name, "-n", namespace,
        f"kanaria.io/command={verb} {nonce}",
    )  # fmt: skip
    return nonce


def change_model(cp: ControlPlane, namespace: str, name: str, version: str) -> None:
    """Start a rollout: a new spec.model, as a user (or GitOps) would write it."""
    model = {"version": version, "uri": f"https://models.example.com/{version}.onnx"}
    patch = json.dumps({"spec": {"model": model}})
    cp.kubectl("patch", "modeldeployment", name, "-n", namespace, "--type", "merge", "-p", patch)


INTERVAL = "2s"
"""Analysis interval of the test rollouts: four 500ms scrapes per window."""


def md(name: str, strategy: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A ModelDeployment at v1 with ``strategy`` and a success-rate gate (``spec`` overrides)."""
    analysis = {
        "interval": INTERVAL,
        "failureLimit": 0,
        "minRequests": 5,
        "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.95}],
    }
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"version": "v1", "uri": "https://models.example.com/v1.onnx"},
            "replicas": 2,
            "strategy": strategy,
            "analysis": analysis,
            **spec,
        },
    }


def healthy_on(version: str) -> Callable[[dict[str, Any]], bool]:
    def check(s: dict[str, Any]) -> bool:
        return s.get("phase") == "Healthy" and (s.get("stable") or {}).get("version") == version

    return check


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("phase") == phase


def deploy(cp: ControlPlane, namespace: str, doc: dict[str, Any]) -> str:
    """Apply ``doc`` and wait until its v1 is Healthy; returns its name."""
    name: str = doc["metadata"]["name"]
    cp.apply(doc, namespace=namespace)
    wait_status(cp, namespace, name, healthy_on("v1"), "v1 Healthy")
    return name
