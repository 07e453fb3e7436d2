"""A real Kubernetes control plane for the test suite, run as local processes.

There is no container engine here, so kind cannot run; instead, the way
controller-runtime's envtest does it, the upstream binaries run directly on
127.0.0.1: etcd, kube-apiserver (RBAC on), kube-controller-manager (garbage
collection, Deployment -> ReplicaSet -> Pod), kube-scheduler and kwok. kwok is
the one fake: it stands in for the kubelets of a couple of fake nodes, marking
scheduled pods Running and Ready so that Deployments become Available.

One control plane serves the whole session (startup costs seconds, not a test's
worth); each test gets its own namespace from the ``namespace`` fixture.

Binaries come from ``KANARIA_CONTROL_PLANE`` (set by ``make test``), else from
``KUBEBUILDER_ASSETS`` when it holds all of them, else from running
``scripts/build-control-plane.sh`` (cached; minutes on a cold machine).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import procs

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-control-plane.sh"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    "kubelet",
    "kube-proxy",
    "coredns",
    "pause",
)
"""Everything scripts/build-control-plane.sh builds: the kwok tier uses the first
seven, the real node (tests/support/node.py) the rest too."""
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODES = ("kwok-node-0", "kwok-node-1")
STARTUP_TIMEOUT = 120.0
"""Seconds for each component to come up; generous because the test machine is shared."""


class ControlPlaneUnavailableError(RuntimeError):
    """The binaries could not be found or built."""


KWOK_STAGES = "kwok-stages.yaml"
"""kwok's node and pod stages, written next to the binaries by the build script."""


def _has_all(directory: Path) -> bool:
    binaries = all(
        (directory / b).is_file() and os.access(directory / b, os.X_OK) for b in BINARIES
    )
    return binaries and (directory / KWOK_STAGES).is_file()


def find_binaries() -> Path:
    """Directory holding every control-plane binary, building them if needed."""
    for var in ("KANARIA_CONTROL_PLANE", "KUBEBUILDER_ASSETS"):
        value = os.environ.get(var)
        if value and _has_all(Path(value)):
            return Path(value)
    if shutil.which("go") is None and not os.environ.get("KANARIA_CONTROL_PLANE"):
        raise ControlPlaneUnavailableError(
            "control-plane binaries not found: set KANARIA_CONTROL_PLANE or KUBEBUILDER_ASSETS "
            "to a directory with " + ", ".join(BINARIES) + ", or install Go so that "
            "scripts/build-control-plane.sh can build them (make control-plane)"
        )
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not _has_all(Path(lines[-1])):
        raise ControlPlaneUnavailableError(
            f"scripts/build-control-plane.sh failed (exit {result.returncode}):\n"
            + result.stderr[-3000:]
        )
    return Path(lines[-1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


ADMIN_SUBJECT = "/O=system:masters/CN=kanaria-admin"


def make_certificates(
    pki: Path,
    server_ips: Sequence[str] = ("127.0.0.1",),
    clients: dict[str, str] | None = None,
) -> None:
    """A CA, the apiserver's serving cert, client certs and the SA key pair.

    ``server_ips`` go into the serving cert's SANs (a real node's cluster adds its
    node IP and the ``kubernetes`` Service IP). ``clients`` maps file stems to
    subjects; ``admin`` (system:masters) is always made. The openssl CLI is used
    rather than a Python crypto library so the test environment needs nothing
    beyond what every Debian system has.
    """
    pki.mkdir(parents=True, exist_ok=True)
    days = "2"
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=kanaria-test-ca",
        "-days", days, "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    sans = [f"IP:{ip}" for ip in server_ips] + [
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    (pki / "server.ext").write_text(
        f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth\n"
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    certs = [("server", "/CN=kube-apiserver", "server.ext"), ("admin", ADMIN_SUBJECT, "client.ext")]
    certs += [(name, subject, "client.ext") for name, subject in (clients or {}).items()]
    for name, subject, ext in certs:
        _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr",
                 cwd=pki)  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", days, "-extfile", ext, "-out", f"{name}.crt", cwd=pki,
        )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str = "admin") -> None:
    """A kubeconfig for the client certificate ``pki/<user>.crt`` (admin: system:masters)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kanaria-test",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "kanaria-test", "context": {"cluster": "kanaria-test", "user": user}}
        ],
        "current-context": "kanaria-test",
    }
    path.write_text(yaml.safe_dump(config))


def fake_node(name: str) -> dict[str, Any]:
    """A Node object that kwok manages (the annotation selects it)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
            "phase": "Running",
        },
    }


@dataclass
class ControlPlane:
    """A running control plane: where its kubeconfig is and how to talk to it."""

    bin_dir: Path
    workdir: Path
    kubeconfig: Path = field(init=False)
    server: str = ""
    processes: list[procs.Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kubeconfig = self.workdir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def env(self) -> dict[str, str]:
        """Environment for child processes that talk to this cluster (kubectl, helm, operator)."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.workdir / "helm" / "data"),
        }

    def _run(
        self, binary: str, args: Sequence[str], check: bool, input: str | None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{binary} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; ``check`` raises with its output on failure."""
        return self._run("kubectl", ["--kubeconfig", str(self.kubeconfig), *args], check, input)

    def helm(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster (its cache and config live in the workdir)."""
        return self._run("helm", ["--kubeconfig", str(self.kubeconfig), *args], check, input)

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        """``kubectl apply`` the given objects (as one YAML stream)."""
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump_all(objects))

    def get_json(self, *args: str) -> Any:
        """``kubectl get ... -o json`` parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def _wait(self, check: Callable[[], bool], what: str, interval: float) -> None:
        """Poll ``check`` (errors mean "not yet"), but fail at once if a component died."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if check():
                    return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(interval)
        raise TimeoutError(f"timed out after {STARTUP_TIMEOUT}s waiting for {what} ({last})")

    def _ready(self) -> bool:
        pki = self.workdir / "pki"
        tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        response = httpx.get(f"{self.server}/readyz", verify=tls, timeout=2.0)
        return response.status_code == 200

    def _start(self, name: str, args: Sequence[str]) -> procs.Process:
        proc = procs.start([str(self.bin_dir / name), *args], self.log_dir, name)
        self.processes.append(proc)
        return proc

    def _check_alive(self) -> None:
        for proc in self.processes:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()[-4000:]}"
                )

    def start_etcd(self) -> str:
        """etcd on free loopback ports, data in the workdir; returns its client URL."""
        client, peer = procs.free_port(), procs.free_port()
        self._start(
            "etcd",
            [
                "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync", "--log-level", "warn",
            ],
        )  # fmt: skip
        self.processes[-1].wait_http(f"http://127.0.0.1:{client}/health", STARTUP_TIMEOUT)
        return f"http://127.0.0.1:{client}"

    def start_apiserver(
        self,
        etcd: str,
        address: str,
        port: int,
        service_cidr: str,
        authorization: str = "RBAC",
        extra: Sequence[str] = (),
    ) -> None:
        """kube-apiserver on ``address:port`` (RBAC, the test CA), then the admin
        kubeconfig; waits for /readyz."""
        pki = self.workdir / "pki"
        self.server = f"https://{address}:{port}"
        self._start(
            "kube-apiserver",
            [
                "--etcd-servers", etcd,
                "--bind-address", address,
                "--advertise-address", address,
                "--secure-port", str(port),
                "--cert-dir", str(pki),
                "--tls-cert-file", str(pki / "server.crt"),
                "--tls-private-key-file", str(pki / "server.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range", service_cidr,
                "--authorization-mode", authorization,
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v", "0",
                *extra,
            ],
        )  # fmt: skip
        write_kubeconfig(self.kubeconfig, self.server, pki)
        self._wait(self._ready, "kube-apiserver /readyz", 0.25)

    def start_controllers(self) -> None:
        """controller-manager (garbage collection, Deployments -> Pods, the root CA
        ConfigMap pods need) and scheduler, both as admin on free loopback ports."""
        pki = self.workdir / "pki"
        kubeconfig = str(self.kubeconfig)
        common = [
            "--kubeconfig", kubeconfig,
            "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig,
            "--bind-address", "127.0.0.1",
            "--leader-elect=false",
            "--v", "0",
        ]  # fmt: skip
        self._start(
            "kube-controller-manager",
            [
                *common,
                "--secure-port", str(procs.free_port()),
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--root-ca-file", str(pki / "ca.crt"),
                "--cluster-signing-cert-file", str(pki / "ca.crt"),
                "--cluster-signing-key-file", str(pki / "ca.key"),
                "--controllers", "*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--concurrent-gc-syncs", "5",
            ],
        )  # fmt: skip
        self._start("kube-scheduler", [*common, "--secure-port", str(procs.free_port())])

    def start(self) -> None:
        """Start every component in order and wait until the cluster schedules pods."""
        make_certificates(self.workdir / "pki")
        etcd = self.start_etcd()
        self.start_apiserver(etcd, "127.0.0.1", procs.free_port(), "10.96.0.0/16")
        self.start_controllers()
        kubeconfig = str(self.kubeconfig)
        self._start(
            "kwok",
            [
                "--kubeconfig", kubeconfig,
                "--config", str(self.bin_dir / KWOK_STAGES),
                "--node-lease-duration-seconds", "40",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector", f"{FAKE_NODE_ANNOTATION}=fake",
                "--cidr", "10.244.0.0/16",
                "--node-ip", "127.0.0.1",
            ],
        )  # fmt: skip
        self.apply(*(fake_node(n) for n in FAKE_NODES))
        self._wait(self._nodes_ready, "kwok to mark the fake nodes Ready", 0.5)

    def _nodes_ready(self) -> bool:
        nodes = self.get_json("nodes")["items"]
        ready = [
            n
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) == len(FAKE_NODES)

    def stop(self) -> None:
        """Stop every component by PID, newest first."""
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()


def unavailable(message: str) -> None:
    if procs.REQUIRE_ALL:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """One running control plane for the whole session (skips when it cannot be had)."""
    if shutil.which("openssl") is None:
        unavailable("openssl not found: needed to make the test cluster's certificates")
    try:
        bin_dir = find_binaries()
    except ControlPlaneUnavailableError as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable raises
    workdir = Path(tempfile.mkdtemp(prefix="kanaria-cp-"))
    cp = ControlPlane(bin_dir=bin_dir, workdir=workdir)
    try:
        cp.start()
    except Exception as exc:
        logs = "\n".join(f"--- {p.name} ---\n{p.output()[-3000:]}" for p in cp.processes)
        cp.stop()
        raise RuntimeError(f"the test control plane did not start: {exc}\nlogs:\n{logs}") from exc
    except BaseException:
        cp.stop()
        raise
    try:
        yield cp
    finally:
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
