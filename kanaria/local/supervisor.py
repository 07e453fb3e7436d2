"""Child processes of ``kanaria up``: start, health-check, restart, adopt and stop by PID.

Each child runs in its own session (so a signal to it reaches its whole process
group and nothing else) and writes to its own log file in the state directory.
A child that exits is restarted with exponential backoff; after
:data:`MAX_RESTARTS` quick failures it is left down and reported, instead of
flapping forever. After ``kanaria up`` itself was killed, its children keep
running; a restarted ``kanaria up`` adopts them when the PID still runs the
exact recorded command line, so the rollout resumes without dropping traffic.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kanaria.local.statedir import ProcessRecord
from kanaria.logtail import last_error_line, read_tail

MAX_RESTARTS = 5
"""Restarts within :data:`RESTART_WINDOW_S` after which a child is left down."""
RESTART_WINDOW_S = 60.0
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    """Can a server listen on 127.0.0.1:``port`` right now?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_cmdline(pid: int) -> list[str] | None:
    """Command line of ``pid`` from /proc (None where /proc is unavailable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_pid(pid: int, timeout: float = 10.0, popen: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group led by ``pid``, wait, then SIGKILL it."""
    if not pid_alive(pid):
        return
    try:
        target_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    sender = os.killpg if target_group else os.kill
    with contextlib.suppress(ProcessLookupError):
        sender(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return
        if popen is None and not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        sender(pid, signal.SIGKILL)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(5)


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    port: int
    health_url: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    pid: int = 0
    started_at: float = 0.0
    restarts: int = 0
    failures: list[float] = field(default_factory=list)
    next_start: float = 0.0
    gave_up: bool = False
    ready: bool = False
    last_problem: str | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid > 0 and pid_alive(self.pid)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def problem(self) -> str | None:
        """Why it is not ready, once it has exited: the exit code and the line of its log
        naming the error (the same text the operator shows for a pod). Kept while a
        restart is pending or starting, so the reason does not flap; cleared once ready."""
        code = self.exit_code()
        if code is not None:
            line = last_error_line(read_tail(self.log))
            self.last_problem = f"exited with code {code}" + (f": {line}" if line else "")
        if self.ready:
            self.last_problem = None
        return self.last_problem

    def record(self) -> ProcessRecord:
        return ProcessRecord(
            pid=self.pid,
            port=self.port,
            argv=self.argv,
            startedAt=self.started_at,
            restarts=self.restarts,
        )

    def log_tail(self, lines: int = 8) -> str:
        """The last ``lines`` lines of the child's log (where it says why it failed)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


class Supervisor:
    """Keeps a set of named children running."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.children: dict[str, Child] = {}
        self._env = {**os.environ, **(env or {})}
        self._http = httpx.Client(timeout=1.0)

    def start(self, name: str, argv: list[str], port: int, health_url: str, log: Path) -> Child:
        """Start a new child (replacing any old one of the same name)."""
        old = self.children.pop(name, None)
        if old is not None:
            self._stop_child(old)
        child = Child(name=name, argv=argv, port=port, health_url=health_url, log=log)
        self._spawn(child)
        self.children[name] = child
        return child

    def adopt(self, name: str, record: ProcessRecord, health_url: str, log: Path) -> Child | None:
        """Take over a child left by a previous ``kanaria up``, if it is still that child."""
        if not pid_alive(record.pid) or pid_cmdline(record.pid) != record.argv:
            return None
        child = Child(
            name=name,
            argv=record.argv,
            port=record.port,
            health_url=health_url,
            log=log,
            pid=record.pid,
            started_at=record.startedAt,
            restarts=record.restarts,
        )
        self.children[name] = child
        return child

    def _spawn(self, child: Child) -> None:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        with child.log.open("ab") as fh:
            fh.write(f"--- {time.strftime('%H:%M:%S')} starting: {' '.join(child.argv)}\n".encode())
            fh.flush()
            child.popen = subprocess.Popen(
                child.argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                start_new_session=True,
            )
        child.pid = child.popen.pid
        child.started_at = time.time()
        child.ready = False

    def check(self, name: str) -> bool:
        """Is the child up and answering its health URL? Restarts it if it died."""
        child = self.children.get(name)
        if child is None:
            return False
        if not child.alive():
            child.ready = False
            self._maybe_restart(child)
            return False
        try:
            child.ready = self._http.get(child.health_url).status_code == 200
        except httpx.HTTPError:
            child.ready = False
        return child.ready

    def _maybe_restart(self, child: Child) -> None:
        if child.gave_up:
            return
        now = time.monotonic()
        if child.next_start == 0.0:
            child.failures = [t for t in child.failures if now - t < RESTART_WINDOW_S] + [now]
            if len(child.failures) > MAX_RESTARTS:
                child.gave_up = True
                return
            child.next_start = now + BACKOFF_S[min(len(child.failures), len(BACKOFF_S)) - 1]
        if now >= child.next_start:
            child.next_start = 0.0
            child.restarts += 1
            self._spawn(child)

    def wait_ready(self, name: str, timeout: float) -> bool:
        """Poll :meth:`check` until ready, the child gives up, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.check(name):
                return True
            child = self.children.get(name)
            if child is None or child.gave_up:
                return False
            time.sleep(0.1)
        return False

    def stop(self, name: str, timeout: float = 10.0) -> None:
        child = self.children.pop(name, None)
        if child is not None:
            self._stop_child(child, timeout)

    def _stop_child(self, child: Child, timeout: float = 10.0) -> None:
        if child.pid > 0:
            stop_pid(child.pid, timeout, child.popen)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every child by PID (SIGTERM to all first, so they drain in parallel)."""
        children = list(self.children.values())
        self.children.clear()
        for child in children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            self._stop_child(child, timeout)
        self._http.close()
