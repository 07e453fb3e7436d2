"""A real single-node Kubernetes for the test suite: real pods from images built here.

The kwok control plane (``tests/support/controlplane.py``) proves what the API
server sees; this one proves what a kubelet does with it. It runs, as local
processes: etcd, kube-apiserver (Node + RBAC authorization), the
controller-manager and scheduler, containerd with runc and the CNI bridge
plugin, the kubelet, kube-proxy (iptables) and CoreDNS, all built by
``scripts/build-control-plane.sh`` except containerd, runc and the CNI plugins,
which are Debian's. No registry is reachable, so every image (the pause
sandbox included) is loaded into containerd from archives built here.

The network is sealed (:mod:`tests.support.hostnet`): nothing a pod sends can
leave the machine, and pods resolve only cluster names.

Everything lives under one fixed root, ``NODE_ROOT``, so that the next start can
find and remove what a crashed run left (processes, mounts, netns, iptables
chains, cgroups, sysctls) before it begins, as :meth:`NodeCluster.stop` does
after every run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import hostnet, procs
from tests.support.controlplane import (
    ControlPlane,
    ControlPlaneUnavailableError,
    find_binaries,
    make_certificates,
    unavailable,
    write_kubeconfig,
)

NODE_ROOT = Path(tempfile.gettempdir()) / "kanaria-node"
"""Fixed, so that a crashed run's leftovers are found and removed by the next one."""
CLUSTER_DIR = NODE_ROOT / "cluster"
"""The control plane's certificates, kubeconfigs and etcd data."""
NODE_NAME = "kanaria-node"
API_PORT = 6443
"""Fixed ports are safe here: they are bound on ``NODE_IP`` only, which this run owns."""
KUBERNETES_SERVICE_IP = "10.96.0.1"
PAUSE_IMAGE = "localhost/kanaria/pause:3.10"
NODE_TOOLS = ("containerd", "ctr", "runc")
CNI_BIN_DIR = Path("/usr/lib/cni")
START_TIMEOUT = 180.0
"""Seconds for the node to become Ready; generous because the machine is shared."""


def _socket() -> Path:
    return NODE_ROOT / "containerd" / "containerd.sock"


def pause_archive(pause_binary: Path, out: Path) -> Path:
    """A docker-archive of the sandbox image: the static pause binary, nothing else.

    Written directly (one layer, one config, one manifest) instead of with a
    container engine: it is 3 files, and the pause image is the one image the
    node needs before anything else works.
    """
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        info = tarfile.TarInfo("pause")
        info.mode = 0o755
        data = pause_binary.read_bytes()
        info.size = len(data)
        layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buf.getvalue()
    layer_digest = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [
            {
                "Config": config_name,
                "RepoTags": [PAUSE_IMAGE],
                "Layers": [f"{layer_digest}/layer.tar"],
            }
        ]
    ).encode()
    with tarfile.open(out, mode="w") as archive:
        for name, payload in (
            (f"{layer_digest}/layer.tar", layer_bytes),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return out


def containerd_config() -> str:
    """containerd 1.6 with the CRI plugin, private paths, and this machine's two needs:
    no AppArmor, and no negative oom_score_adj (root lacks CAP_SYS_RESOURCE)."""
    base = NODE_ROOT / "containerd"
    cri = "io.containerd.grpc.v1.cri"
    return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{_socket()}"

[ttrpc]
  address = "{_socket()}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."{cri}"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"

[plugins."{cri}".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."{cri}".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."{cri}".containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins."{cri}".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{NODE_ROOT / "cni" / "net.d"}"
  max_conf_num = 1
"""


def cni_config() -> dict[str, object]:
    """The pod network: the sealed bridge, host-local addresses, no masquerade."""
    return {
        "cniVersion": "1.0.0",
        "name": "kanaria",
        "plugins": [
            {
                "type": "bridge",
                "bridge": hostnet.BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": hostnet.POD_CIDR, "gateway": hostnet.POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(NODE_ROOT / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(pki: Path) -> dict[str, object]:
    """KubeletConfiguration for this machine: cgroup v1 via cgroupfs (no systemd),
    eviction and image GC loose enough that preloaded images are never collected and
    a busy disk never taints the node, and pods resolving only through CoreDNS."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": hostnet.NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": hostnet.NODE_IP,
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{_socket()}",
        "clusterDNS": [hostnet.NODE_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "podLogsDir": str(NODE_ROOT / "pod-logs"),
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "syncFrequency": "10s",
    }


def kube_proxy_config(kubeconfig: Path) -> dict[str, object]:
    """kube-proxy in iptables mode; NodePorts on the node IP only, conntrack limits
    left as they are (setting them needs privileges this machine's root lacks)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": hostnet.POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": hostnet.NODE_IP,
        "healthzBindAddress": f"{hostnet.NODE_IP}:10256",
        "metricsBindAddress": f"{hostnet.NODE_IP}:10249",
        "nodePortAddresses": [f"{hostnet.NODE_IP}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0},
    }


def corefile(kubeconfig: Path) -> str:
    """Cluster names only: no ``forward``, so no query ever leaves the machine."""
    ip = hostnet.NODE_IP
    return f""".:53 {{
    bind {ip}
    errors
    health {ip}:8080
    ready {ip}:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} kanaria-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""


FIGURES: list[str] = []
"""Measured figures (pod start, rollout and reaction times) of this session's real-node
tests, printed at the end of the run: measured, never asserted."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the real-node figures after the test summary."""
    if FIGURES:
        terminalreporter.section("real-node figures (measured in this run)")
        for line in FIGURES:
            terminalreporter.write_line(line)


_running: list[NodeCluster] = []
"""The cluster of this process, if one runs (there can be one: its paths are fixed)."""


class NodeCluster(ControlPlane):
    """The control plane plus one real node; ``kubectl``/``helm``/``apply`` as usual."""

    @property
    def log_dir(self) -> Path:
        """Outside ``NODE_ROOT``, so the logs outlive teardown (one fixed place, rewritten
        by the next run)."""
        return NODE_ROOT.parent / "kanaria-node-logs"

    @property
    def sysctl_record(self) -> Path:
        return NODE_ROOT.parent / "kanaria-node.sysctls.json"

    def ctr(self, *args: str, check: bool = True) -> str:
        """``ctr`` against this node's containerd, in the CRI's namespace."""
        return hostnet.sh("ctr", "--address", str(_socket()), "-n", "k8s.io", *args, check=check)

    def load_image(self, archive: Path) -> None:
        """Import a docker-archive (e.g. ``podman save``) so pods can use it offline."""
        self.ctr("images", "import", str(archive))

    def start(self) -> None:
        """Clean what an earlier run left, then bring up every part in order."""
        if _running:
            raise RuntimeError("a real node already runs in this process; one at a time")
        _running.append(self)
        hostnet.clean(NODE_ROOT, self.sysctl_record)
        shutil.rmtree(NODE_ROOT, ignore_errors=True)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        hostnet.save_sysctls(self.sysctl_record)
        hostnet.setup_network()
        pki = self.workdir / "pki"
        make_certificates(
            pki,
            server_ips=("127.0.0.1", hostnet.NODE_IP, KUBERNETES_SERVICE_IP),
            clients={
                "kubelet": f"/O=system:nodes/CN=system:node:{NODE_NAME}",
                "kube-proxy": "/CN=system:kube-proxy",
                "apiserver-kubelet-client": "/O=system:masters/CN=kube-apiserver-kubelet-client",
            },
        )
        self._start_control_plane(pki)
        self._start_node(pki)

    def _start_control_plane(self, pki: Path) -> None:
        etcd = self.start_etcd()
        self.start_apiserver(
            etcd,
            hostnet.NODE_IP,
            API_PORT,
            hostnet.SERVICE_CIDR,
            authorization="Node,RBAC",
            extra=[
                "--enable-admission-plugins", "NodeRestriction",
                "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
                "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
                "--kubelet-preferred-address-types", "InternalIP",
            ],
        )  # fmt: skip
        self.start_controllers()

    def _start_node(self, pki: Path) -> None:
        for sub in ("cni/net.d", "cni/ipam", "containerd", "kubelet", "pod-logs"):
            (NODE_ROOT / sub).mkdir(parents=True, exist_ok=True)
        (NODE_ROOT / "cni/net.d/10-kanaria.conflist").write_text(json.dumps(cni_config()))
        config = NODE_ROOT / "containerd" / "config.toml"
        config.write_text(containerd_config())
        self.processes.append(
            procs.start(
                [shutil.which("containerd") or "containerd", "--config", str(config)],
                self.log_dir,
                "containerd",
            )
        )
        self._wait(lambda: bool(self.ctr("version", check=False)), "containerd", 0.2)
        self.load_image(pause_archive(self.bin_dir / "pause", NODE_ROOT / "pause.tar"))

        kubelet_kubeconfig = NODE_ROOT / "kubelet" / "kubeconfig"
        write_kubeconfig(kubelet_kubeconfig, self.server, pki, user="kubelet")
        kubelet_yaml = NODE_ROOT / "kubelet" / "config.yaml"
        kubelet_yaml.write_text(yaml.safe_dump(kubelet_config(pki)))
        self._start(
            "kubelet",
            [
                "--config", str(kubelet_yaml),
                "--kubeconfig", str(kubelet_kubeconfig),
                "--hostname-override", NODE_NAME,
                "--node-ip", hostnet.NODE_IP,
                "--root-dir", str(NODE_ROOT / "kubelet"),
                "--cert-dir", str(NODE_ROOT / "kubelet" / "pki"),
                "--v", "1",
            ],
        )  # fmt: skip
        proxy_kubeconfig = NODE_ROOT / "kube-proxy.kubeconfig"
        write_kubeconfig(proxy_kubeconfig, self.server, pki, user="kube-proxy")
        proxy_yaml = NODE_ROOT / "kube-proxy.yaml"
        proxy_yaml.write_text(yaml.safe_dump(kube_proxy_config(proxy_kubeconfig)))
        self._start("kube-proxy", ["--config", str(proxy_yaml), "--v", "0"])
        core = NODE_ROOT / "Corefile"
        core.write_text(corefile(self.kubeconfig))
        self._start("coredns", ["-conf", str(core)])
        self._wait(self._node_ready, "the kubelet to register a Ready node", 0.5)
        self._wait(
            lambda: httpx.get(f"http://{hostnet.NODE_IP}:8181/ready", timeout=1).status_code == 200,
            "CoreDNS ready",
            0.5,
        )

    def _node_ready(self) -> bool:
        node = self.get_json("node", NODE_NAME)
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def logs(self) -> str:
        """The tail of every component's log, for a failure message."""
        return "\n".join(f"--- {p.name} ---\n{p.output()[-3000:]}" for p in self.processes)

    def stop(self) -> None:
        """Stop every process, then remove every trace from the machine."""
        kubelet = [p for p in self.processes if p.name == "kubelet"]
        for proc in kubelet:  # first, so it restarts nothing while the rest goes
            proc.stop()
        super().stop()
        hostnet.clean(NODE_ROOT, self.sysctl_record)
        shutil.rmtree(NODE_ROOT, ignore_errors=True)
        if self in _running:
            _running.remove(self)

    def crash(self) -> None:
        """SIGKILL every process and clean nothing: what a crashed run leaves behind."""
        hostnet.kill_all(p.pid for p in self.processes)
        for proc in self.processes:
            proc.popen.wait(10)
        self.processes.clear()
        if self in _running:
            _running.remove(self)


def missing_node_tools() -> list[str]:
    """What this machine lacks to run the real node (empty when it can)."""
    missing = [t for t in NODE_TOOLS if shutil.which(t) is None]
    missing += [f"CNI plugin {p}" for p in ("bridge", "host-local", "portmap")
                if not (CNI_BIN_DIR / p).exists()]  # fmt: skip
    missing += [t for t in ("iptables", "ip") if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root (the kubelet and CNI need it)")
    return missing


@pytest.fixture(scope="session")
def real_node() -> Iterator[NodeCluster]:
    """One real single-node cluster for the session, torn down afterwards (also on
    failure); skips, or fails under KANARIA_REQUIRE_ALL=1, when it cannot run here."""
    missing = missing_node_tools()
    if missing:
        unavailable(
            "the real-node tests need " + ", ".join(missing) + " (make system-deps installs them)"
        )
    try:
        bin_dir = find_binaries()
    except ControlPlaneUnavailableError as exc:
        unavailable(str(exc))
        raise
    cluster = NodeCluster(bin_dir=bin_dir, workdir=CLUSTER_DIR)
    started = time.monotonic()
    try:
        cluster.start()
    except BaseException as exc:
        logs = cluster.logs()
        cluster.stop()
        if isinstance(exc, Exception):
            raise RuntimeError(f"the real node did not start: {exc}\n{logs}") from exc
        raise
    FIGURES.append(
        f"real node: control plane, node Ready and CoreDNS in {time.monotonic() - started:.1f}s"
    )
    try:
        yield cluster
    finally:
        cluster.stop()
