"""Real processes on 127.0.0.1 for tests: start, wait until they answer, stop by PID.

Every integration test runs real servers, so the start/stop logic lives here
once: free ports, log files that are printed when something fails to start,
and shutdown by PID (SIGTERM, then SIGKILL) so nothing outlives the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REQUIRE_ALL = os.environ.get("KANARIA_REQUIRE_ALL") == "1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require_binary(name: str, why: str) -> str:
    """Path of an external binary; skip the test (or fail under CI) when absent."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        message = f"{name} not found: {why} (make system-deps installs it)"
        if REQUIRE_ALL:
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it returns True; raise with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the thing being waited for is not up yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class Process:
    """A child process with its log file; ``stop()`` ends it and its group by PID."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path, name: str) -> None:
        self.popen = popen
        self.log = log
        self.name = name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode

    def wait_http(self, url: str, timeout: float = 30.0, status: int = 200) -> None:
        """Wait until ``url`` answers ``status``; on failure include the process log."""

        def ok() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}")
            return httpx.get(url, timeout=1.0).status_code == status

        try:
            wait_until(ok, timeout, f"{self.name} at {url}")
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n--- {self.name} log ---\n{self.output()[-4000:]}") from exc


def start(
    args: Sequence[str],
    log_dir: Path,
    name: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """Start ``args`` in its own process group with output to ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as fh:
        popen = subprocess.Popen(
            list(args),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    return Process(popen, log, name)


def children(pid: int, marker: str) -> list[int]:
    """PIDs of ``pid``'s child processes whose command line contains ``marker``
    (children started by its main thread, which is where ours start them)."""
    found: list[int] = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:  # exited since the list was read
            continue
        if marker.encode() in cmdline:
            found.append(int(child))
    return found


def kanaria(*args: str) -> list[str]:
    """Command line of the ``kanaria`` CLI in this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "kanaria", *args]


@contextmanager
def running(
    args: Sequence[str],
    log_dir: Path,
    name: str,
    ready_url: str | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[Process]:
    """Context manager: start, wait for ``ready_url`` (if given), always stop."""
    proc = start(args, log_dir, name, env=env)
    try:
        if ready_url:
            proc.wait_http(ready_url, timeout)
        yield proc
    finally:
        proc.stop()
