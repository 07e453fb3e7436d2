"""The project's three images, built here with podman the way users build them.

``scripts/build-images.sh --save`` builds them (on a base made from Debian
packages unless ``KANARIA_BASE_IMAGE`` names another), tagged by a hash of
their content so a warm run builds nothing, and writes docker-archive tarballs
that ``ctr -n k8s.io images import`` loads into a node. The session fixture
``images`` returns what it printed.

Without podman (or mmdebstrap, for the local base) the tests that need images
are skipped, or fail under ``KANARIA_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import procs

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-images.sh"
NAMES = ("operator", "router", "server")
"""Image names: kanaria-operator, kanaria-router, kanaria-server."""

UID = 65532
"""The images' user (their USER line)."""

PODMAN_ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
"""podman's default nproc limit needs CAP_SYS_RESOURCE, which root may lack."""


@dataclass(frozen=True)
class Image:
    """One built image."""

    name: str
    """operator, router or server."""
    ref: str
    """Local reference, ``localhost/kanaria-<name>:<content hash>``."""
    archive: Path
    """docker-archive tarball of ``ref`` (for ``ctr -n k8s.io images import``)."""


@dataclass(frozen=True)
class Images:
    """The three images and the base they were built on."""

    base: str
    operator: Image
    router: Image
    server: Image
    built: tuple[str, ...]
    """Names of the images this build had to build (none when all were cached)."""
    build_seconds: float
    """Wall time of the build script (about 2 s when every image was cached)."""

    def all(self) -> tuple[Image, Image, Image]:
        return (self.operator, self.router, self.server)


class ImagesUnavailableError(RuntimeError):
    """A tool the build needs is not installed."""


def _missing_tools() -> list[str]:
    needed = ["podman"]
    if not os.environ.get("KANARIA_BASE_IMAGE"):
        needed.append("mmdebstrap")
    return [t for t in needed if shutil.which(t) is None]


def build_images(timeout: float = 3600) -> Images:
    """Build (or reuse) the images and their archives; raise if that fails."""
    missing = _missing_tools()
    if missing:
        raise ImagesUnavailableError(
            f"{', '.join(missing)} not found: needed to build the images "
            "(make system-deps installs them)"
        )
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--save"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"scripts/build-images.sh failed (exit {result.returncode}):\n{result.stderr[-6000:]}"
        )
    out = json.loads(lines[-1])
    built = {name: Image(name, out["images"][name], Path(out["archives"][name])) for name in NAMES}
    return Images(
        base=out["base"],
        operator=built["operator"],
        router=built["router"],
        server=built["server"],
        built=tuple(out["built"]),
        build_seconds=seconds,
    )


_built: dict[str, Images | Exception] = {}
"""The session's build, done once collection ends (key ``"result"``)."""


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the images before the first test when any test needs them: a cold build
    takes minutes, which must not count against that test's timeout."""
    if session.config.option.collectonly:
        return
    if not any("images" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("building the images (scripts/build-images.sh --save) ...")
    try:
        _built["result"] = build_images()
    except Exception as exc:  # reported by the fixture, in the tests that need it
        _built["result"] = exc
    if reporter is not None:
        result = _built["result"]
        done = f"{result.build_seconds:.0f} s" if isinstance(result, Images) else "failed"
        reporter.write_line(f"images: {done}")


@pytest.fixture(scope="session")
def images() -> Images:
    """The three images, built once per session (skipped without podman, unless
    KANARIA_REQUIRE_ALL=1, where that fails)."""
    try:
        result = _built.get("result") or build_images()
        if isinstance(result, Exception):
            raise result
    except ImagesUnavailableError as exc:
        if procs.REQUIRE_ALL:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return result


POD_LIKE = (
    "--user", f"{UID}:{UID}",
    "--passwd=false",  # a pod gets no /etc/passwd line for its uid; podman adds one by default
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs", "/tmp",  # the emptyDir the operator's pod specs mount there
    "--cap-drop=all",
    "--security-opt", "no-new-privileges",
    *PODMAN_ULIMITS,
)  # fmt: skip
"""``podman run`` flags that give a container what a Kanaria pod gets: uid 65532 with no
passwd entry, a read-only root filesystem with /tmp writable, no capabilities."""
