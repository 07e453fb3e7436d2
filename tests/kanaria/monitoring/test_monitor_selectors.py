"""The monitors select what the operator really creates (its object builders and manifests).

PodMonitors find routers and model servers by pod labels and a port name that
kanaria_operator.objects sets; a renamed label or port would silently empty the
dashboard, so the selectors are checked against the builders' output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kanaria_operator.objects import Images, Owner, desired_objects

from kanaria.api import LiveVersion, VersionRole, load_model_deployment
from kanaria.monitoring import monitors
from kanaria.monitoring.promql import MODEL_SERVER, ROUTER
from kanaria.routes import RoutesConfig

ROOT = Path(__file__).resolve().parents[3]


def _selected(monitor: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted: dict[str, str] = monitor["spec"]["selector"]["matchLabels"]
    return wanted.items() <= labels.items()


def _pods_by_component() -> dict[str, dict[str, Any]]:
    md = load_model_deployment(ROOT / "manifests" / "samples" / "canary.yaml")
    owner = Owner(name=md.metadata.name, namespace="ml", uid="0000")
    live = [
        LiveVersion(version="v1", uri="file:///m/v1.onnx", role=VersionRole.stable, replicas=2),
        LiveVersion(version="v2", uri="file:///m/v2.onnx", role=VersionRole.candidate, replicas=1),
    ]
    objects = desired_objects(owner, md.spec, live, RoutesConfig(), Images("srv:1", "rtr:1"))
    pods: dict[str, dict[str, Any]] = {}
    for obj in objects:
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
            component = template["metadata"]["labels"]["app.kubernetes.io/component"]
            pods.setdefault(component, template)
    return pods


def test_pod_monitors_select_the_router_and_model_server_pods_the_operator_creates() -> None:
    pods = _pods_by_component()
    assert set(pods) == {ROUTER, MODEL_SERVER}
    pod_monitors = {
        m["metadata"]["name"]: m
        for m in monitors.monitor_objects("kanaria-system")
        if m["kind"] == "PodMonitor"
    }
    for component, template in pods.items():
        labels = template["metadata"]["labels"]
        chosen = [name for name, m in pod_monitors.items() if _selected(m, labels)]
        assert chosen == [f"kanaria-{component}"], (component, labels)
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        (endpoint,) = pod_monitors[f"kanaria-{component}"]["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] in ports


def test_service_monitor_selects_the_operator_metrics_service() -> None:
    docs = [
        d
        for p in sorted((ROOT / "manifests" / "operator").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]
    services = [d for d in docs if d["kind"] == "Service"]
    (service_monitor,) = [
        m for m in monitors.monitor_objects("kanaria-system") if m["kind"] == "ServiceMonitor"
    ]
    chosen = [s for s in services if _selected(service_monitor, s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in chosen] == ["kanaria-operator-metrics"]
    assert chosen[0]["metadata"]["namespace"] == service_monitor["metadata"]["namespace"]
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in chosen[0]["spec"]["ports"]}
