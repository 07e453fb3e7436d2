"""A real Label Studio on 127.0.0.1 for the review path's tests: start, wait, stop by PID.

Label Studio comes from ``scripts/install-label-studio.sh``, which puts it in a
venv of its own under the cache (its pins would fight ours); the version is the
script's, read from it so there is one place to change it. When it is not
installed the tests that need it skip with that command as the reason, or fail
under ``KANARIA_REQUIRE_ALL=1`` (:func:`tests.support.controlplane.unavailable`).

Each start gets a free port, a throwaway data dir (a copy of the install's
template: a SQLite database with every migration applied, so no start spends
minutes migrating) and an admin user created non-interactively the way Label Studio documents it for
automation: ``label-studio start --username U --password P --user-token T``
(the ``LABEL_STUDIO_USERNAME``/``_PASSWORD``/``_USER_TOKEN`` variables are the
same settings). The token is a *legacy* token; 1.23 accepts those only when
the organisation allows them, hence ``--enable-legacy-api-token`` (and
``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``). Phone-home is off: no version
check against PyPI, no analytics, no Sentry.

A started Label Studio is recorded in ``RECORDS`` (its PID, data dir and the
PID of the test process that owns it) until it is stopped, so that the next
start stops, by PID, one that a crashed test run left behind, and removes its
data dir. A record whose owner still runs is someone else's and is left alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kanaria.review.labelstudio import Connection
from tests.support import procs
from tests.support.controlplane import unavailable

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "scripts" / "install-label-studio.sh"
RECORDS = Path(tempfile.gettempdir()) / "kanaria-label-studio"
"""Fixed, so that what a crashed run left is found by the next start."""
START_TIMEOUT = 180.0
"""Seconds for Label Studio to answer. It starts from the install script's migrated
template (a first start that migrates takes minutes); generous because the machine is
shared."""
USERNAME = "reviewer@kanaria.test"


class LabelStudioUnavailableError(Exception):
    """Label Studio is not installed; ``str()`` says how to install it."""


def pinned_version() -> str:
    """The version ``scripts/install-label-studio.sh`` installs (its default)."""
    match = re.search(
        r'^VERSION="\$\{LABEL_STUDIO_VERSION:-([^}]+)\}"', INSTALL_SCRIPT.read_text(), re.M
    )
    if match is None:
        raise RuntimeError(f"no VERSION=... line in {INSTALL_SCRIPT}")
    return match.group(1)


def venv_dir() -> Path:
    """Where the install script puts the venv (``KANARIA_LABEL_STUDIO_VENV`` overrides)."""
    override = os.environ.get("KANARIA_LABEL_STUDIO_VENV")
    if override:
        return Path(override)
    cache = os.environ.get("KANARIA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kanaria"
    )
    version = os.environ.get("LABEL_STUDIO_VERSION") or pinned_version()
    return Path(cache) / "label-studio" / version / "venv"


@dataclass(frozen=True)
class Install:
    """What the install script made: the executable and the migrated template data dir."""

    binary: Path
    template: Path


def find_label_studio() -> Install:
    """The finished install, or LabelStudioUnavailableError saying how to make it."""
    venv = venv_dir()
    install = Install(venv / "bin" / "label-studio", venv.parent / "template")
    complete = venv.parent / "venv.complete"
    if not (
        complete.exists()
        and install.binary.is_file()
        and (install.template / "label_studio.sqlite3").is_file()
    ):
        raise LabelStudioUnavailableError(
            f"Label Studio is not installed at {venv}: run scripts/install-label-studio.sh "
            "(make test does)"
        )
    return install


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_leftovers() -> list[int]:
    """Stop (by PID) each recorded Label Studio whose test process is gone; their PIDs."""
    reaped: list[int] = []
    if not RECORDS.is_dir():
        return reaped
    for record in RECORDS.glob("*.json"):
        try:
            doc = json.loads(record.read_text())
            pid, owner, data_dir = int(doc["pid"]), int(doc["owner"]), str(doc["data_dir"])
        except (OSError, ValueError, KeyError):
            record.unlink(missing_ok=True)
            continue
        if _alive(owner):
            continue  # a running test session's own Label Studio
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        # The data dir is unique to that start: a PID reused since is not matched.
        if data_dir.encode() in cmdline:
            try:
                os.killpg(pid, signal.SIGKILL)
                reaped.append(pid)
            except ProcessLookupError:
                pass
        shutil.rmtree(data_dir, ignore_errors=True)
        record.unlink(missing_ok=True)
    return reaped


@dataclass
class LabelStudio:
    """A running Label Studio and the admin user's credentials."""

    process: procs.Process
    url: str
    token: str
    password: str
    data_dir: Path
    record: Path

    def connection(self) -> Connection:
        return Connection(self.url, self.token)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call as the admin user (what a reviewer's browser does)."""
        return httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Token {self.token}"},
            timeout=30,
            **kwargs,
        )

    def stop(self) -> None:
        """Stop the process (group) by PID, remove its data dir and its record."""
        try:
            self.process.stop()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.record.unlink(missing_ok=True)


def start_label_studio(
    install: Install, log_dir: Path, timeout: float = START_TIMEOUT, host: str = "127.0.0.1"
) -> LabelStudio:
    """Start Label Studio on a free port of ``host`` (127.0.0.1, or the real node's IP
    for router pods to reach) with a copy of the migrated template data dir, and wait
    until its API answers the admin user's token. Stops it again if it does not come up."""
    reap_leftovers()
    RECORDS.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="kanaria-ls-"))
    shutil.copytree(install.template, data_dir, dirs_exist_ok=True)
    port = procs.free_port()
    token = secrets.token_hex(20)  # 40 characters: the longest key Label Studio stores
    password = secrets.token_urlsafe(16)
    env = {
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_HOST": "",  # relative URLs; and no stray HOST from the environment
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    args = [
        str(install.binary), "start", "--no-browser",
        "--internal-host", host, "--port", str(port),
        "--data-dir", str(data_dir),
        "--username", USERNAME, "--password", password, "--user-token", token,
        "--enable-legacy-api-token", "--log-level", "WARNING",
    ]  # fmt: skip
    process = procs.start(args, log_dir, "label-studio", env=env)
    record = RECORDS / f"{process.pid}.json"
    record.write_text(
        json.dumps({"pid": process.pid, "owner": os.getpid(), "data_dir": str(data_dir)})
    )
    studio = LabelStudio(process, f"http://{host}:{port}", token, password, data_dir, record)
    try:
        process.wait_http(f"{studio.url}/health", timeout)
        answer = studio.api("GET", "/api/projects")
        if answer.status_code != 200:
            raise RuntimeError(
                f"Label Studio is up but refuses the admin token: HTTP {answer.status_code} "
                f"{answer.text[:300]}\n--- log ---\n{process.output()[-3000:]}"
            )
    except BaseException:
        studio.stop()
        raise
    return studio


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """One Label Studio for the session (tests use projects of their own)."""
    try:
        install = find_label_studio()
    except LabelStudioUnavailableError as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable raises
    studio = start_label_studio(install, tmp_path_factory.mktemp("label-studio-logs"))
    try:
        yield studio
    finally:
        studio.stop()


def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll ``check()`` until it returns something truthy; that value (bounded deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
