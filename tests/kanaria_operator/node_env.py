"""The product on the real node: images loaded, Prometheus with Kubernetes service
discovery, the chart installed with helm, and a model-file server pod.

Session fixtures, registered in ``tests/conftest.py``; the tests that use them are
``tests/kanaria_operator/test_node_*.py``. Everything runs for real: the
operator, routers and model servers are pods from the images built here, the
gates read a real Prometheus that found those pods through the API server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kanaria.modelgen import mlp_classifier
from tests.support import automation_stream, hostnet, procs
from tests.support.controlplane import REPO
from tests.support.images import Images
from tests.support.node import NodeCluster

CHART = REPO / "helm" / "kanaria"
RELEASE_NAMESPACE = "kanaria-system"
MODELS_NAMESPACE = "kanaria-models"
MODEL_VERSIONS = ("v1", "v2", "v3", "v4")
MODEL_LAYERS = (8, 16, 3)
"""Small MLP classifiers: 8 features, 3 classes (a few KB each, ConfigMap-sized)."""
PROMETHEUS_PORT = 19090
"""On the node IP, which this run owns: reachable by the operator pod and the host."""
SCRAPE_INTERVAL = "1s"
WAIT_S = 180.0
"""Upper bound for anything on the node to happen (not a timing assertion)."""


@dataclass(frozen=True)
class ModelFiles:
    """ONNX files served inside the cluster: version -> (uri, sha256), and the local paths."""

    uris: dict[str, str]
    sha256: dict[str, str]
    paths: dict[str, Path]

    def source(self, version: str, file: str | None = None) -> dict[str, str]:
        """``spec.model`` for ``version`` (from the file of that name, or ``file``),
        sha256 checked by the model server."""
        key = file or version
        return {"version": version, "uri": self.uris[key], "sha256": self.sha256[key]}


@dataclass(frozen=True)
class Platform:
    """What a real-node test needs: the cluster, the Prometheus URL, the model files."""

    cluster: NodeCluster
    prometheus_url: str
    models: ModelFiles
    images: Images


def wait_for(cluster: NodeCluster, *args: str, timeout: float = WAIT_S) -> None:
    """``kubectl wait`` with our bound, failing with the objects' state."""
    result = cluster.kubectl("wait", f"--timeout={int(timeout)}s", *args, check=False)
    if result.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        events = cluster.kubectl(
            "get", "events", "-A", "--sort-by=.lastTimestamp", check=False
        ).stdout
        raise AssertionError(
            f"kubectl wait {' '.join(args)}: {result.stderr}\n{pods}\n{events[-4000:]}"
        )


@pytest.fixture(scope="session")
def node_images(real_node: NodeCluster, images: Images) -> Images:
    """The three component images, imported into the node's containerd."""
    for image in images.all():
        real_node.load_image(image.archive)
    return images


ANNOTATION = "__meta_kubernetes_pod_annotation_prometheus_io_"


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prometheus HTTP SD target groups for running pods, with the ``__meta_kubernetes_*``
    labels Kubernetes SD would give them (namespace, name, IP, the prometheus.io
    annotations), so the usual relabelling applies unchanged."""
    groups = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        ip = status.get("podIP")
        if status.get("phase") != "Running" or not ip:
            continue
        labels = {
            "__meta_kubernetes_namespace": meta["namespace"],
            "__meta_kubernetes_pod_name": meta["name"],
            "__meta_kubernetes_pod_ip": ip,
        }
        for key, value in (meta.get("annotations") or {}).items():
            if key.startswith("prometheus.io/"):
                labels[ANNOTATION + key.removeprefix("prometheus.io/")] = value
        groups.append({"targets": [f"{ip}:80"], "labels": labels})
    return groups


class PodDiscovery:
    """Kubernetes pod discovery served as Prometheus HTTP SD.

    Debian builds Prometheus without Kubernetes SD (``kubernetes_sd_configs`` is
    rejected), so this lists the pods from the node's API server on every refresh
    and hands Prometheus the same ``__meta_kubernetes_*`` labels. It is the one
    stand-in of the real-node tier: Prometheus, the scraping and the queries are real.
    """

    def __init__(self, cluster: NodeCluster) -> None:
        pki = cluster.workdir / "pki"
        tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._client = httpx.Client(base_url=cluster.server, verify=tls, timeout=5)
        discovery = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(pod_targets(discovery.pods())).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/targets"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def pods(self) -> list[dict[str, Any]]:
        response = self._client.get("/api/v1/pods")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()


def prometheus_config(discovery_url: str) -> dict[str, Any]:
    """Scrape pods annotated ``prometheus.io/scrape: "true"`` (as the operator annotates
    routers and model servers) at the annotated port and path."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "http_sd_configs": [{"url": discovery_url, "refresh_interval": "1s"}],
                "relabel_configs": [
                    {"source_labels": [f"{ANNOTATION}scrape"], "regex": "true", "action": "keep"},
                    {
                        "source_labels": ["__meta_kubernetes_pod_ip", f"{ANNOTATION}port"],
                        "regex": "(.+);(\\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {
                        "source_labels": [f"{ANNOTATION}path"],
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            }
        ],
    }


@pytest.fixture(scope="session")
def node_prometheus(real_node: NodeCluster) -> Iterator[str]:
    """Debian's Prometheus on the host, finding pods through the node's API server."""
    binary = procs.require_binary("prometheus", "the real-node gates query a real one")
    work = Path(tempfile.mkdtemp(prefix="kanaria-node-prom-"))
    discovery = PodDiscovery(real_node)
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(discovery.url)))
    url = f"http://{hostnet.NODE_IP}:{PROMETHEUS_PORT}"
    try:
        with procs.running(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address={hostnet.NODE_IP}:{PROMETHEUS_PORT}",
                "--log.level=warn",
            ],
            real_node.log_dir,
            "prometheus",
            ready_url=f"{url}/-/ready",
        ):
            yield url
    finally:
        discovery.close()


def _generate_models(directory: Path) -> dict[str, Path]:
    """The MLP versions, and the two linear classifiers of the automation scenario."""
    return {
        **{
            v: mlp_classifier(directory / f"{v}.onnx", layers=MODEL_LAYERS, seed=i)
            for i, v in enumerate(MODEL_VERSIONS)
        },
        **automation_stream.classifiers(directory, MODEL_LAYERS[0]),
    }


def model_server_objects(files: dict[str, Path], image: str) -> list[dict[str, Any]]:
    """A plain HTTP server pod holding the ONNX files (a ConfigMap), and its Service."""
    labels = {"app.kubernetes.io/name": "model-files"}
    binary = {p.name: base64.b64encode(p.read_bytes()).decode() for p in files.values()}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "model-files"},
            "binaryData": binary,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "model-files", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                        "containers": [
                            {
                                "name": "http",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "command": ["python", "-m", "http.server", "8000"],
                                "workingDir": "/models",
                                "ports": [{"name": "http", "containerPort": 8000}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/v1.onnx", "port": "http"},
                                    "periodSeconds": 2,
                                },
                                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                            }
                        ],
                        "volumes": [{"name": "models", "configMap": {"name": "model-files"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "model-files"},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": 8000}],
            },
        },
    ]


@pytest.fixture(scope="session")
def node_models(real_node: NodeCluster, node_images: Images) -> ModelFiles:
    """ONNX files served by an HTTP pod inside the cluster."""
    directory = Path(tempfile.mkdtemp(prefix="kanaria-node-models-"))
    files = _generate_models(directory)
    real_node.kubectl("create", "namespace", MODELS_NAMESPACE)
    real_node.apply(
        *model_server_objects(files, node_images.server.ref), namespace=MODELS_NAMESPACE
    )
    wait_for(real_node, "--for=condition=Available", "-n", MODELS_NAMESPACE,
             "deployment/model-files")  # fmt: skip
    base = f"http://model-files.{MODELS_NAMESPACE}.svc.cluster.local"
    return ModelFiles(
        uris={v: f"{base}/{p.name}" for v, p in files.items()},
        sha256={v: hashlib.sha256(p.read_bytes()).hexdigest() for v, p in files.items()},
        paths=files,
    )


def chart_values(images: Images, prometheus_url: str) -> dict[str, Any]:
    """The chart's values for images that exist only on this node."""

    def image(ref: str) -> dict[str, str]:
        repository, tag = ref.rsplit(":", 1)
        return {"repository": repository, "tag": tag, "pullPolicy": "Never"}

    return {
        "operator": {
            "image": image(images.operator.ref),
            "prometheusUrl": prometheus_url,
            "resyncIntervalSeconds": 2,
        },
        "router": {"image": image(images.router.ref)},
        "modelServer": {"image": image(images.server.ref)},
    }


@pytest.fixture(scope="session")
def platform(
    real_node: NodeCluster,
    node_images: Images,
    node_prometheus: str,
    node_models: ModelFiles,
) -> Platform:
    """``helm install`` of the chart, with the operator pod Ready."""
    values = Path(tempfile.mkdtemp(prefix="kanaria-node-values-")) / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(node_images, node_prometheus)))
    real_node.helm(
        "install", "kanaria", str(CHART), "--namespace", RELEASE_NAMESPACE,
        "--create-namespace", "-f", str(values), "--wait", "--timeout", f"{int(WAIT_S)}s",
    )  # fmt: skip
    wait_for(real_node, "--for=condition=Available", "-n", RELEASE_NAMESPACE,
             "deployment/kanaria-operator")  # fmt: skip
    return Platform(real_node, node_prometheus, node_models, node_images)


@pytest.fixture
def node_namespace(platform: Platform) -> Iterator[str]:
    """A namespace of the real node for one test, deleted after it."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    platform.cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        platform.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def prometheus_query(url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def service_ip(cluster: NodeCluster, namespace: str, name: str) -> str:
    """A Service's ClusterIP (the host reaches it through kube-proxy's rules)."""
    svc = cluster.get_json("service", name, "-n", namespace)
    ip: str = svc["spec"]["clusterIP"]
    return ip


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
