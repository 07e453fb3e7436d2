"""ConfigMap mode against the real test kube-apiserver: a router process on
127.0.0.1 watches a ConfigMap and applies a weight change written to it.

The delay between the write and the router applying it is measured and printed
(``-s`` shows it; it is also a test property), never asserted: timing belongs to
benchmarks, not tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client, config

from tests.kanaria_router.conftest import Backend, RouterProc, routes
from tests.support import procs
from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

NAME = "kanaria-routes"


@pytest.fixture
def core(control_plane: ControlPlane) -> client.CoreV1Api:
    kubeconfig = str(control_plane.kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api)


def put(core: client.CoreV1Api, namespace: str, text: str) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=NAME), data={"routes.yaml": text})
    try:
        core.replace_namespaced_config_map(NAME, namespace, body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)


@pytest.fixture
def watching_router(
    control_plane: ControlPlane, namespace: str, log_dir: Path, tmp_path: Path
) -> Iterator[RouterProc]:
    port = procs.free_port()
    args = procs.kanaria(
        "route", "--configmap", f"{namespace}/{NAME}", "--kubeconfig",
        str(control_plane.kubeconfig), "--port", str(port), "--host", "127.0.0.1",
    )  # fmt: skip
    proc = procs.start(args, log_dir, "router-configmap")
    try:
        yield RouterProc(proc, port, tmp_path / "unused.yaml")
    finally:
        proc.stop()


def test_weight_change_in_the_configmap_applies_quickly(
    core: client.CoreV1Api,
    namespace: str,
    watching_router: RouterProc,
    shared_backends: dict[str, Backend],
    record_property: Callable[[str, object], None],
) -> None:
    b = shared_backends
    r = watching_router

    def doc(canary: int) -> str:
        return routes(
            {"fraud": {"versions": {"v1": (b["v1"], 100 - canary), "v2": (b["v2"], canary)}}}
        )

    # not ready until the ConfigMap exists: a router must not serve without routes
    procs.wait_until(
        lambda: httpx.get(f"{r.url}/v2/health/ready", timeout=2).status_code == 503,
        60,
        "the router to answer (unready: no ConfigMap yet)",
    )
    put(core, namespace, doc(0))
    r.proc.wait_http(f"{r.url}/v2/health/ready", timeout=30)
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert c.post("/v2/models/fraud/infer", json={}).headers["x-kanaria-version"] == "v1"

    delays = []
    for canary in (100, 40):
        written = time.monotonic()
        put(core, namespace, doc(canary))
        r.wait_weight("fraud", "v2", canary, timeout=30)
        delays.append(time.monotonic() - written)
    print(f"\nConfigMap write -> router applied: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")
    record_property("configmap_apply_delay_s", max(delays))

    # an invalid document is rejected and the routes stay
    put(core, namespace, "models: {fraud: {versions: {v1: {url: 'http://x', weight: 5}}}}")
    procs.wait_until(
        lambda: r.metric("kanaria_router_config_reloads_total", result="rejected") == 1,
        30,
        "the invalid ConfigMap to be rejected",
    )
    assert r.metric("kanaria_router_weight_percent", model="fraud", version="v2") == 40
    assert "rejected, keeping the previous routes" in r.proc.output()


def test_router_needs_only_get_list_watch_on_its_one_configmap(
    control_plane: ControlPlane,
    core: client.CoreV1Api,
    namespace: str,
    log_dir: Path,
    tmp_path: Path,
    shared_backends: dict[str, Backend],
) -> None:
    """The operator grants the router a Role limited by resourceNames; the router's
    list and watch select its ConfigMap by name, which is what such a Role allows."""
    account = "router"
    control_plane.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [NAME],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
        namespace=namespace,
    )
    token = control_plane.kubectl("create", "token", account, "-n", namespace).stdout.strip()
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    admin["users"] = [{"name": account, "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = account
    kubeconfig = tmp_path / "router-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(admin))
    put(core, namespace, routes({"fraud": {"versions": {"v1": (shared_backends["v1"], 100)}}}))
    # RBAC reaches the authorizer's cache a moment after the RoleBinding is written;
    # a router started before would log a 403 (and retry) that is no fault of its own
    subject = f"system:serviceaccount:{namespace}:{account}"

    def allowed() -> bool:
        return all(
            control_plane.kubectl(
                "auth", "can-i", verb, f"configmap/{NAME}", "-n", namespace, "--as", subject,
                check=False,
            ).returncode == 0
            for verb in ("get", "list", "watch")
        )  # fmt: skip

    procs.wait_until(allowed, 30, "the router's Role to take effect", 0.2)

    port = procs.free_port()
    args = procs.kanaria(
        "route", "--configmap", f"{namespace}/{NAME}", "--kubeconfig", str(kubeconfig),
        "--port", str(port), "--host", "127.0.0.1",
    )  # fmt: skip
    with procs.running(
        args, log_dir, "router-least-privilege", f"http://127.0.0.1:{port}/v2/health/ready"
    ) as proc:
        r = RouterProc(proc, port, tmp_path / "unused.yaml")
        put(core, namespace, routes({"fraud": {"versions": {"v2": (shared_backends["v2"], 100)}}}))
        r.wait_weight("fraud", "v2", 100, timeout=30)
        assert "403" not in proc.output()
