"""The three images, built here from the Dockerfiles, run the way a pod runs them.

Each container runs as uid 65532 with no passwd entry, a read-only root
filesystem (only /tmp writable), no capabilities and the host's network
namespace (so it listens on 127.0.0.1 and reaches nothing else here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from kanaria.modelgen import INPUT_NAME, OUTPUT_NAME, mlp_classifier
from tests.support import procs
from tests.support.images import POD_LIKE, UID, Image, Images, build_images

pytestmark = pytest.mark.slow


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def inspect(image: Image) -> dict[str, object]:
    result = podman("image", "inspect", image.ref)
    assert result.returncode == 0, result.stderr
    config: dict[str, object] = json.loads(result.stdout)[0]["Config"]
    return config


def test_every_image_runs_as_non_root_and_has_its_archive(images: Images) -> None:
    for image in images.all():
        config = inspect(image)
        assert config["User"] == f"{UID}:{UID}", image.ref
        assert config["Entrypoint"] == ["kanaria"], image.ref
        assert image.archive.is_file()
        assert image.archive.stat().st_size > 0
        assert image.ref.startswith(f"localhost/kanaria-{image.name}:")
        assert not image.ref.endswith(":latest")


def test_images_are_tagged_by_content_so_a_second_build_reuses_them(images: Images) -> None:
    # Two builds back to back (not against the session's: a checkout edited since then
    # rightly gets new tags); the second finds every tag present and builds nothing.
    first = build_images()
    second = build_images()
    assert [i.ref for i in second.all()] == [i.ref for i in first.all()]
    assert second.base == first.base
    assert second.built == ()
    for image in second.all():
        assert len(image.ref.rsplit(":", 1)[1]) == 16


@pytest.mark.parametrize(
    ("name", "command", "expected"),
    [
        ("operator", ["operator", "--help"], "--identity"),
        ("router", ["route", "--help"], "usage:"),
        ("server", ["serve-model", "--help"], "usage:"),
    ],
)
def test_image_runs_its_command_as_in_a_pod(
    images: Images, name: str, command: list[str], expected: str
) -> None:
    image: Image = getattr(images, name)
    result = podman("run", "--rm", "--network=none", *POD_LIKE, image.ref, *command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout


def test_no_passwd_entry_for_the_user_in_a_pod_like_container(images: Images) -> None:
    """The setting the operator's identity fix is about (see test_identity.py) holds in
    these containers: getpass.getuser() fails as it does in a pod."""
    script = "import getpass\ntry:\n    getpass.getuser()\nexcept KeyError:\n    print('no-entry')"
    result = podman(
        "run", "--rm", "--network=none", "--env", "USER=", *POD_LIKE,
        "--entrypoint", "python", images.operator.ref, "-c", script,
    )  # fmt: skip
    assert result.stdout.strip() == "no-entry", result.stdout + result.stderr


@pytest.fixture
def model_dir() -> Iterator[Path]:
    """A generated model in a folder uid 65532 can read (pytest's tmp_path is private)."""
    d = Path(tempfile.mkdtemp(prefix="kanaria-image-model-"))
    try:
        d.chmod(0o755)
        path = mlp_classifier(d / "mlp.onnx", layers=(8, 16, 3), seed=7)
        path.chmod(0o644)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"kanaria-test-{uuid.uuid4().hex[:8]}"
    yield name
    podman("rm", "--force", "--time", "5", name)


def test_model_server_image_serves_a_generated_model(
    images: Images, model_dir: Path, container_name: str
) -> None:
    port = procs.free_port()
    result = podman(
        "run", "--detach", "--name", container_name, "--network=host", *POD_LIKE,
        "--tmpfs", "/var/cache/kanaria",
        "--volume", f"{model_dir}:/models:ro",
        "--env", "KANARIA_MODEL=/models/mlp.onnx",
        "--env", "KANARIA_NAME=mlp",
        "--env", "KANARIA_HOST=127.0.0.1",
        "--env", f"KANARIA_PORT={port}",
        images.server.ref,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", container_name)
        if state.stdout.strip() != "true":
            raise RuntimeError("container exited")
        return httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200

    try:
        procs.wait_until(ready, 90, "the model server container to be ready", interval=0.25)
    except (TimeoutError, RuntimeError) as exc:
        logs = podman("logs", container_name)
        raise AssertionError(f"{exc}\n--- container log ---\n{logs.stdout}{logs.stderr}") from exc

    x = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    body = {
        "inputs": [
            {"name": INPUT_NAME, "shape": [2, 8], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    r = httpx.post(f"{base}/v2/models/mlp/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    (out,) = [o for o in r.json()["outputs"] if o["name"] == OUTPUT_NAME]
    expected = ort.InferenceSession(str(model_dir / "mlp.onnx")).run(None, {INPUT_NAME: x})[0]
    np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), expected, rtol=1e-5)
    top = podman("top", container_name, "user", "args")
    assert "65532" in top.stdout, top.stdout
