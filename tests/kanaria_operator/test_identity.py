"""The operator runs as a uid that has no passwd entry, as it does in its pod.

The image runs as 65532 and the kubelet adds no /etc/passwd line for it. kopf
names the running operator with ``getpass.getuser()`` unless it is given an
identity, and that raises ``KeyError: 'getpwuid(): uid not found'`` there: the
operator pod crash-looped. ``podman run`` hides it (it adds a passwd line), so
this test runs the operator image with the settings of a pod (``--passwd=false``,
read-only root filesystem, no capabilities) against the real API server.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import procs
from tests.support.controlplane import ControlPlane
from tests.support.images import POD_LIKE, UID, Images

pytestmark = pytest.mark.controlplane


@pytest.fixture
def private_kubeconfig(operator_kubeconfig: Path) -> Iterator[Path]:
    """The operator's kubeconfig, readable by the images' uid only."""
    if os.geteuid() != 0:
        message = "handing a file to the images' uid needs root"
        if procs.REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    work = Path(tempfile.mkdtemp(prefix="kanaria-identity-"))
    try:
        path = work / "kubeconfig"
        # Self-contained (the CA inline), so a container can use it too.
        config = yaml.safe_load(operator_kubeconfig.read_text())
        for cluster in config["clusters"]:
            ca = cluster["cluster"].pop("certificate-authority", None)
            if ca is not None:
                data = base64.b64encode(Path(ca).read_bytes()).decode()
                cluster["cluster"]["certificate-authority-data"] = data
        path.write_text(yaml.safe_dump(config))
        for p in (work, path):
            os.chown(p, UID, UID)
        work.chmod(0o700)
        path.chmod(0o600)
        yield path
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_operator_image_starts_as_in_a_pod(
    installed: ControlPlane,
    namespace: str,
    private_kubeconfig: Path,
    images: Images,
) -> None:
    kubeconfig = private_kubeconfig
    health_port, metrics_port = procs.free_port(), procs.free_port()
    name = f"kanaria-test-operator-{uuid.uuid4().hex[:8]}"
    run = [
        "podman", "run", "--detach", "--name", name,
        "--network=host",  # the API server listens on 127.0.0.1 here
        *POD_LIKE,
        "--volume", f"{kubeconfig}:/var/run/kanaria/kubeconfig:ro",
        "--env", "KANARIA_CHECK_MODEL_URIS=false",
        images.operator.ref,
        "operator",
        "--kubeconfig", "/var/run/kanaria/kubeconfig",
        "--namespace", namespace,
        "--health-port", str(health_port),
        "--metrics-port", str(metrics_port),
        "--lease-name", f"identity-image-{namespace}",
        "--lease-namespace", "kanaria-system",
    ]  # fmt: skip
    started = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode == 0, started.stderr
    try:

        def healthy() -> bool:
            state = subprocess.run(
                ["podman", "inspect", "--format", "{{.State.Running}}", name],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            if state.stdout.strip() != "true":
                raise RuntimeError("the operator container exited")
            return httpx.get(f"http://127.0.0.1:{health_port}/healthz", timeout=1).is_success

        try:
            procs.wait_until(healthy, 90, "the operator container's /healthz", interval=0.25)
        except (TimeoutError, RuntimeError) as exc:
            logs = subprocess.run(
                ["podman", "logs", name], capture_output=True, text=True, timeout=30, check=False
            )
            raise AssertionError(
                f"{exc}\n--- container log ---\n{logs.stdout}{logs.stderr}"
            ) from exc
    finally:
        subprocess.run(
            ["podman", "rm", "--force", "--time", "5", name],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
