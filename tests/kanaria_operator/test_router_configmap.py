"""The router follows the routes the operator writes, with the permissions the operator
gave it: a real ``kanaria route`` process started with the router Deployment's own args
and environment (``KANARIA_CONFIGMAP``), authenticated as the router ServiceAccount
(token from the test API server), watches the ConfigMap while the operator moves
weights.

How long a weight change takes from the ConfigMap write to the router applying
it is measured and printed (``-s``; also a test property), never asserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client, config

from tests.kanaria_operator.conftest import StartOperator
from tests.kanaria_operator.helpers import (
    change_model,
    command,
    deploy,
    md,
    phase_is,
    wait_status,
)
from tests.support import procs
from tests.support.controlplane import ControlPlane

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

STEPS = {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]}}


def service_account_kubeconfig(cp: ControlPlane, namespace: str, sa: str, path: Path) -> Path:
    token = cp.kubectl("create", "token", sa, "-n", namespace).stdout.strip()
    config = yaml.safe_load(cp.kubeconfig.read_text())
    config["users"] = [{"name": sa, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = sa
    path.write_text(yaml.safe_dump(config))
    return path


def router_weight(url: str, model: str, version: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=2).text
    for line in text.splitlines():
        if line.startswith("kanaria_router_weight_percent{") and (
            f'model="{model}"' in line and f'version="{version}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def configmap_weight(core: client.CoreV1Api, namespace: str, name: str, version: str) -> float:
    cm = core.read_namespaced_config_map(f"{name}-routes", namespace)
    doc = yaml.safe_load((cm.data or {})["routes.yaml"])
    weight: float = doc["models"][name]["versions"].get(version, {}).get("weight", 0)
    return weight


def test_router_applies_the_weights_the_operator_writes(
    installed: ControlPlane,
    namespace: str,
    start_operator: StartOperator,
    log_dir: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    start_operator(namespace, f"l-{namespace}")
    name = deploy(installed, namespace, md("routed", STEPS, analysis={"interval": "1s"}))
    sa = f"system:serviceaccount:{namespace}:{name}-router"
    for resource, allowed in ((f"configmaps/{name}-routes", "yes"), ("configmaps/other", "no"),
                              ("secrets", "no")):  # fmt: skip
        r = installed.kubectl("auth", "can-i", "watch", resource, "-n", namespace, "--as", sa,
                              check=False)  # fmt: skip
        assert r.stdout.strip() == allowed, resource

    kubeconfig = service_account_kubeconfig(
        installed, namespace, f"{name}-router", tmp_path / "router-kubeconfig"
    )
    # The router runs exactly as the operator's Deployment says (args and env), only
    # listening on 127.0.0.1 and reading the ServiceAccount token from a kubeconfig.
    router = installed.get_json("deployment", f"{name}-router", "-n", namespace)
    (container,) = router["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env.update(KANARIA_HOST="127.0.0.1", KANARIA_PORT=str(port), KANARIA_KUBECONFIG=str(kubeconfig))
    args = procs.kanaria(*container["args"])
    with procs.running(args, log_dir, "router", ready_url=f"{url}/v2/health/live", env=env):
        procs.wait_until(
            lambda: router_weight(url, name, "v1") == 100, 60, "the router to load v1 at 100%", 0.2
        )
        change_model(installed, namespace, name, "v2")
        wait_status(installed, namespace, name, phase_is("Paused"), "the pause at 30%")
        procs.wait_until(
            lambda: router_weight(url, name, "v2") == 30, 60, "the router to send 30% to v2", 0.2
        )

        api = config.new_client_from_config(config_file=str(installed.kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(api)
        command(installed, namespace, name, "promote")
        written_at = applied_at = None
        cycle = 0.0
        deadline = time.monotonic() + 120
        while (written_at is None or applied_at is None) and time.monotonic() < deadline:
            now = time.monotonic()
            if written_at is None and configmap_weight(core, namespace, name, "v2") == 60:
                written_at = now
            if applied_at is None and router_weight(url, name, "v2") == 60:
                applied_at = now
            time.sleep(0.02)
            cycle = max(cycle, time.monotonic() - now)
        assert written_at is not None, "the operator never wrote 60% for v2"
        assert applied_at is not None, "the router never applied 60% for v2"
        delay = max(0.0, applied_at - written_at)
        record_property("configmap_to_router_seconds", round(delay, 3))
        record_property("poll_cycle_seconds", round(cycle, 3))
        print(
            f"\noperator ConfigMap write -> router applied: {delay:.3f}s "
            f"(resolution: one poll cycle, at most {cycle:.3f}s)"
        )
