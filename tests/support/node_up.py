"""``make node-up``: the test suite's real single-node cluster, for a person to try.

Brings up exactly what the real-node tests use — etcd, the API server,
controller-manager, scheduler, containerd, the kubelet, kube-proxy and CoreDNS on
this Debian machine (root, no Docker, no registry) — builds and loads the three
images, starts Prometheus with Kubernetes service discovery, ``helm install``s the
chart and applies a sample ModelDeployment whose model files are served by a pod.
Then it prints how to reach it and waits; Ctrl-C (or SIGTERM) tears everything down
and leaves nothing behind, the same way the tests do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

import yaml

from kanaria.modelgen import mlp_classifier
from tests.kanaria_operator import node_env
from tests.support import hostnet, images, procs
from tests.support.controlplane import find_binaries
from tests.support.node import CLUSTER_DIR, NodeCluster, missing_node_tools

SAMPLE_NAMESPACE = "ml"
SAMPLE = "fraud"
MAX_HOURS = 12.0
"""The cluster stops by itself after this long, so a forgotten one does not run on."""


def sample(uri: str, sha256: str) -> dict[str, object]:
    """A canary ModelDeployment with a success-rate gate, at the first model file."""
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": SAMPLE},
        "spec": {
            "model": {"version": "v1", "uri": uri, "sha256": sha256},
            "replicas": 1,
            "strategy": {
                "canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]}
            },
            "analysis": {
                "interval": "10s",
                "minRequests": 5,
                "metrics": [{"name": "success-rate", "builtin": "successRate", "min": 0.99}],
            },
        },
    }


def service_ip(cluster: NodeCluster) -> str:
    """The sample's client Service address, once the operator has made it."""
    found: list[str] = []

    def made() -> bool:
        result = cluster.kubectl(
            "get", "service", SAMPLE, "-n", SAMPLE_NAMESPACE,
            "-o", "jsonpath={.spec.clusterIP}", check=False,
        )  # fmt: skip
        found.append(result.stdout.strip())
        return result.returncode == 0 and bool(found[-1])

    procs.wait_until(made, 120, f"the operator to create Service {SAMPLE}", interval=0.5)
    return found[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make node-up", description=__doc__)
    parser.add_argument(
        "--hours", type=float, default=2.0, help=f"stop after this long (at most {MAX_HOURS:g})"
    )
    args = parser.parse_args(argv)
    if not 0 < args.hours <= MAX_HOURS:
        parser.error(f"--hours must be in (0, {MAX_HOURS:g}]")
    missing = missing_node_tools()
    if missing:
        print(
            f"node-up needs {', '.join(missing)} (run `make system-deps` as root)", file=sys.stderr
        )
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("building (or reusing) the images ...", flush=True)
    built = images.build_images()
    work = Path(tempfile.mkdtemp(prefix="kanaria-node-up-"))
    cluster = NodeCluster(bin_dir=find_binaries(), workdir=CLUSTER_DIR)
    started = time.monotonic()
    try:
        cluster.start()
        for image in built.all():
            cluster.load_image(image.archive)
        prom_dir = work / "prometheus"
        prom_dir.mkdir()
        discovery = node_env.PodDiscovery(cluster)
        (prom_dir / "prometheus.yml").write_text(
            yaml.safe_dump(node_env.prometheus_config(discovery.url))
        )
        prom_url = f"http://{hostnet.NODE_IP}:{node_env.PROMETHEUS_PORT}"
        binary = procs.require_binary("prometheus", "node-up runs one for the gates")
        cluster.processes.append(
            procs.start(
                [
                    binary,
                    f"--config.file={prom_dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={prom_dir / 'data'}",
                    f"--web.listen-address={hostnet.NODE_IP}:{node_env.PROMETHEUS_PORT}",
                    "--log.level=warn",
                ],
                cluster.log_dir,
                "prometheus",
            )
        )
        files = {
            v: mlp_classifier(work / f"{v}.onnx", node_env.MODEL_LAYERS, seed=i)
            for i, v in enumerate(node_env.MODEL_VERSIONS)
        }
        cluster.kubectl("create", "namespace", node_env.MODELS_NAMESPACE)
        cluster.apply(
            *node_env.model_server_objects(files, built.server.ref),
            namespace=node_env.MODELS_NAMESPACE,
        )
        values = work / "values.yaml"
        values.write_text(yaml.safe_dump(node_env.chart_values(built, prom_url)))
        cluster.helm(
            "install", "kanaria", str(node_env.CHART), "--namespace", node_env.RELEASE_NAMESPACE,
            "--create-namespace", "-f", str(values), "--wait", "--timeout", "300s",
        )  # fmt: skip
        base = f"http://model-files.{node_env.MODELS_NAMESPACE}.svc.cluster.local"
        cluster.kubectl("create", "namespace", SAMPLE_NAMESPACE)
        sha = hashlib.sha256(files["v1"].read_bytes()).hexdigest()
        cluster.apply(sample(f"{base}/v1.onnx", sha), namespace=SAMPLE_NAMESPACE)
        v2_sha = hashlib.sha256(files["v2"].read_bytes()).hexdigest()
        ip = service_ip(cluster)
        body = json.dumps(
            {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}
        )
        print(
            f"""
Kanaria runs on a real node ({time.monotonic() - started:.0f}s). In another shell:

  export KUBECONFIG={cluster.kubeconfig} PATH={cluster.bin_dir}:$PATH   # kubectl, helm
  kubectl get nodes,pods -A
  curl -s http://{ip}/v2/models/{SAMPLE}/infer -d '{body}'   # the Service, from this host
  kubectl get mdep -n {SAMPLE_NAMESPACE} -w
  kubectl patch mdep {SAMPLE} -n {SAMPLE_NAMESPACE} --type merge \\
    -p '{{"spec":{{"model":{{"version":"v2","uri":"{base}/v2.onnx","sha256":"{v2_sha}"}}}}}}'
  .venv/bin/kanaria status {SAMPLE} -n {SAMPLE_NAMESPACE}
  .venv/bin/kanaria promote {SAMPLE} -n {SAMPLE_NAMESPACE}

Prometheus: {prom_url}   logs: {cluster.log_dir}
Ctrl-C tears it all down (it stops by itself after {args.hours:g} h).""",
            flush=True,
        )
        stop.wait(args.hours * 3600)
    finally:
        print("tearing down ...", flush=True)
        cluster.stop()
    print("stopped; nothing is left on the machine", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
