"""Prometheus Operator objects that tell Prometheus where Kanaria's metrics are.

- The operator is scraped through its ``kanaria-operator-metrics`` Service
  (manifests/operator), so it gets a ServiceMonitor.
- Routers and model servers are created by the operator in the users'
  namespaces, one Deployment per model version, so they get PodMonitors that
  select them by the labels the operator puts on their pods, in every namespace.

Every endpoint adds the ``kanaria_component`` target label, which the alerts and
the dashboard's software row use to tell the three apart.
"""

from __future__ import annotations

from typing import Any, Final

from kanaria.monitoring.promql import COMPONENT_LABEL, MODEL_SERVER, OPERATOR, ROUTER

PART_OF: Final = {"app.kubernetes.io/part-of": "kanaria"}
COMPONENT_KEY: Final = "app.kubernetes.io/component"
OPERATOR_SERVICE_LABELS: Final = {"app.kubernetes.io/name": "kanaria-operator"}
OPERATOR_METRICS_PORT: Final = "metrics"
DATA_PLANE_PORT: Final = "http"
"""Container port name of routers and model servers; they serve /metrics on it."""
SCRAPE_INTERVAL: Final = "15s"
LABELS: Final = {"app.kubernetes.io/name": "kanaria", **PART_OF}


def _component_label(component: str) -> list[dict[str, Any]]:
    return [{"targetLabel": COMPONENT_LABEL, "replacement": component, "action": "replace"}]


def operator_service_monitor_spec() -> dict[str, Any]:
    """Scrape the operator's metrics Service (in the namespace the monitor lives in)."""
    return {
        "selector": {"matchLabels": dict(OPERATOR_SERVICE_LABELS)},
        "endpoints": [
            {
                "port": OPERATOR_METRICS_PORT,
                "path": "/metrics",
                "interval": SCRAPE_INTERVAL,
                "relabelings": _component_label(OPERATOR),
            }
        ],
    }


def data_plane_pod_monitor_spec(component: str) -> dict[str, Any]:
    """Scrape every router or model-server pod the operator created, in any namespace."""
    return {
        "namespaceSelector": {"any": True},
        "selector": {"matchLabels": {**PART_OF, COMPONENT_KEY: component}},
        "podMetricsEndpoints": [
            {
                "port": DATA_PLANE_PORT,
                "path": "/metrics",
                "interval": SCRAPE_INTERVAL,
                "relabelings": _component_label(component),
            }
        ],
    }


def monitor_objects(namespace: str) -> list[dict[str, Any]]:
    """The three scrape objects as Kubernetes manifests."""

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": namespace, "labels": dict(LABELS)}

    api = "monitoring.coreos.com/v1"
    return [
        {
            "apiVersion": api,
            "kind": "ServiceMonitor",
            "metadata": meta("kanaria-operator"),
            "spec": operator_service_monitor_spec(),
        },
        {
            "apiVersion": api,
            "kind": "PodMonitor",
            "metadata": meta("kanaria-router"),
            "spec": data_plane_pod_monitor_spec(ROUTER),
        },
        {
            "apiVersion": api,
            "kind": "PodMonitor",
            "metadata": meta("kanaria-model-server"),
            "spec": data_plane_pod_monitor_spec(MODEL_SERVER),
        },
    ]
