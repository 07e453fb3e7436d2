"""The real node itself: it starts after a crashed run, it is sealed, and it leaves
nothing behind.

The first test starts and stops clusters of its own, so it runs before the
session's ``real_node`` exists (this file sorts before the product tests, and a
second cluster in the same process is refused rather than allowed to clash).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import hostnet, procs
from tests.support.controlplane import find_binaries
from tests.support.node import (
    CLUSTER_DIR,
    NODE_NAME,
    NODE_ROOT,
    PAUSE_IMAGE,
    NodeCluster,
    missing_node_tools,
)

pytestmark = [pytest.mark.realnode, pytest.mark.slow]

OUTSIDE_NS = "kanaria-outside"
OUTSIDE_HOST_IP = "10.251.0.1"
OUTSIDE_IP = "10.251.0.2"
"""A test host this test makes (a network namespace on a veth), standing for
"anything not on the pod bridge": a pod must not reach it."""


def pause_pod(name: str) -> dict[str, Any]:
    """The smallest real pod: the pause image as its container."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "c", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
            "automountServiceAccountToken": False,
        },
    }


def test_a_crashed_run_is_cleaned_up_and_teardown_leaves_nothing() -> None:
    missing = missing_node_tools()
    if missing:
        pytest.fail(f"the real node needs {', '.join(missing)}")
    before = hostnet.sysctl_values()
    bin_dir = find_binaries()
    first = NodeCluster(bin_dir=bin_dir, workdir=CLUSTER_DIR)
    try:
        first.start()
        first.kubectl("create", "namespace", "crash")
        first.apply(pause_pod("p"), namespace="crash")
        first.kubectl("wait", "--for=condition=Ready", "-n", "crash", "pod/p", "--timeout=120s")
    except BaseException:
        first.stop()
        raise
    first.crash()
    left = hostnet.footprint(NODE_ROOT)
    # What a crash leaves: the pod's process and shim, its veth and netns, mounts,
    # cgroups and chains. The next start must remove all of it.
    assert left["processes"], left
    assert left["cgroups"], left
    assert any("veth" in link for link in left["links"]), left
    assert left["iptables chains"], left

    second = NodeCluster(bin_dir=bin_dir, workdir=CLUSTER_DIR)
    try:
        second.start()
        second.kubectl("create", "namespace", "again")
        second.apply(pause_pod("p"), namespace="again")
        second.kubectl("wait", "--for=condition=Ready", "-n", "again", "pod/p", "--timeout=120s")
    finally:
        second.stop()
    assert hostnet.footprint(NODE_ROOT) == {k: [] for k in left}
    assert hostnet.sysctl_values() == before
    assert not NODE_ROOT.exists()


@pytest.fixture
def outside_host() -> Iterator[str]:
    """A host in a network namespace of this test, reached from the machine over a veth."""
    subprocess.run(["ip", "netns", "del", OUTSIDE_NS], capture_output=True, check=False)
    hostnet.sh("ip", "netns", "add", OUTSIDE_NS)
    try:
        hostnet.sh(
            "ip", "link", "add", "kanaria-out0", "type", "veth", "peer", "name", "kanaria-out1"
        )
        hostnet.sh("ip", "link", "set", "kanaria-out1", "netns", OUTSIDE_NS)
        hostnet.sh("ip", "addr", "add", f"{OUTSIDE_HOST_IP}/30", "dev", "kanaria-out0")
        hostnet.sh("ip", "link", "set", "kanaria-out0", "up")
        inside = ["ip", "netns", "exec", OUTSIDE_NS]
        hostnet.sh(*inside, "ip", "addr", "add", f"{OUTSIDE_IP}/30", "dev", "kanaria-out1")
        hostnet.sh(*inside, "ip", "link", "set", "kanaria-out1", "up")
        hostnet.sh(*inside, "ip", "link", "set", "lo", "up")
        hostnet.sh(*inside, "ip", "route", "add", "default", "via", OUTSIDE_HOST_IP)
        yield OUTSIDE_IP
    finally:
        subprocess.run(["ip", "link", "del", "kanaria-out0"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", OUTSIDE_NS], capture_output=True, check=False)


def python_pod(name: str, image: str, script: str) -> dict[str, Any]:
    """A pod that runs ``script`` with the server image's Python, then exits."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                }
            ],
        },
    }


def run_pod(cluster: NodeCluster, namespace: str, pod: dict[str, Any]) -> str:
    """Run a pod to completion; its log (the script prints what it found)."""
    name = pod["metadata"]["name"]
    cluster.apply(pod, namespace=namespace)
    procs.wait_until(
        lambda: (
            cluster.get_json("pod", name, "-n", namespace)["status"].get("phase")
            in ("Succeeded", "Failed")
        ),
        120,
        f"pod {name} to finish",
        interval=0.5,
    )
    return cluster.kubectl("logs", "-n", namespace, name).stdout


def listening(ip: str, port: int) -> bool:
    with socket.create_connection((ip, port), 1):
        return True


def test_pods_resolve_cluster_names_only_and_reach_nothing_off_the_bridge(
    real_node: NodeCluster, node_images: Any, outside_host: str
) -> None:
    namespace = "seal"
    real_node.kubectl("create", "namespace", namespace)
    # The outside host answers TCP from the machine itself: it is reachable, so a pod
    # failing to reach it proves the seal, not a dead address.
    server = subprocess.Popen(
        ["ip", "netns", "exec", OUTSIDE_NS, "python3", "-c",
         "import socket; s = socket.create_server(('0.0.0.0', 8099)); "
         "[s.accept()[0].close() for _ in iter(int, 1)]"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        procs.wait_until(lambda: listening(outside_host, 8099), 10, "the outside host")
        script = f"""
import socket
def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError as exc:
        return 'error'
def connect(ip, port):
    try:
        socket.create_connection((ip, port), 3).close()
        return 'connected'
    except OSError as exc:
        return type(exc).__name__
print('kubernetes', resolve('kubernetes.default.svc.cluster.local'))
print('external', resolve('example.com'))
print('outside', connect('{outside_host}', 8099))
print('apiserver', connect('kubernetes.default.svc.cluster.local', 443))
print('resolv', open('/etc/resolv.conf').read().replace(chr(10), ' | '))
"""
        log = run_pod(real_node, namespace, python_pod("probe", node_images.server.ref, script))
    finally:
        server.kill()
        server.wait(5)
    found = dict(line.split(" ", 1) for line in log.strip().splitlines())
    assert found["kubernetes"] == "10.96.0.1", log
    assert found["external"] == "error", log  # no upstream: nothing is forwarded
    assert found["outside"] in {"TimeoutError", "timeout"}, log  # dropped, never answered
    assert found["apiserver"] == "connected", log
    assert f"nameserver {hostnet.NODE_IP}" in found["resolv"], log
    assert found["resolv"].count("nameserver") == 1, log  # not the host's resolvers
    assert hostnet.seal_rules()[0].endswith(f"-j {hostnet.SEAL_CHAIN}"), hostnet.seal_rules()
    nat = hostnet.sh("iptables-save", "-t", "nat")
    pod_masquerade = [
        line for line in nat.splitlines()
        if "MASQUERADE" in line and hostnet.POD_CIDR in line and "KUBE-" not in line
    ]  # fmt: skip
    assert pod_masquerade == [], pod_masquerade
    node = real_node.get_json("node", NODE_NAME)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
