"""The containers the operator writes start real processes as written.

No kubelet runs here, so the model-server container of a version Deployment is
run as a local process with exactly its args and environment (only the listen
address and the model file are pointed at this machine), and the readiness
probe path the Deployment declares must answer 200.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from kanaria_operator import objects

from kanaria.api import LiveVersion, ModelDeploymentSpec, VersionRole
from kanaria.modelgen import mlp_classifier
from tests.support import procs


def test_model_server_container_starts_and_passes_its_probes(tmp_path: Path, log_dir: Path) -> None:
    model = mlp_classifier(tmp_path / "m.onnx", layers=(4, 8, 3), seed=1)
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"version": "v1", "uri": str(model)},
            "server": {"batching": {"maxBatchSize": 8, "maxBatchDelay": "2ms"}},
            "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
        }
    )
    live = LiveVersion(version="v1", uri=str(model), role=VersionRole.stable, replicas=1)
    owner = objects.Owner(name="fraud", namespace="ml", uid="u")
    deployment = objects.version_deployment(owner, spec, live, objects.Images("s", "r"))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    port = procs.free_port()
    env.update(
        KANARIA_HOST="127.0.0.1",
        KANARIA_PORT=str(port),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    readiness = container["readinessProbe"]["httpGet"]["path"]
    liveness = container["livenessProbe"]["httpGet"]["path"]
    with procs.running(
        procs.kanaria(*container["args"]),
        log_dir,
        "model-server-container",
        ready_url=f"http://127.0.0.1:{port}{readiness}",
        env=env,
    ):
        assert httpx.get(f"http://127.0.0.1:{port}{liveness}", timeout=5).status_code == 200
        meta = httpx.get(f"http://127.0.0.1:{port}/v2/models/fraud", timeout=5).json()
        assert meta["name"] == "fraud"
        assert "v1" in str(meta.get("versions", meta))
