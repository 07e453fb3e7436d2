"""A real ``kanaria up`` for integration tests: start it, apply specs, read its state.

Each helper uses the same paths a user would: ``kanaria up`` and ``kanaria
apply`` as child processes of this interpreter, the state directory they write,
and the router they start. Nothing is faked.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kanaria.local.statedir import HistoryPoint, StateDir
from tests.support.procs import Process, free_port, kanaria, start, wait_until

NAME = "fraud"
WIDTH = 8
INTERVAL_S = 2.0


def build_models(folder: Path) -> dict[str, Path]:
    """v1, v2 (differs from v1), v2same (identical answers to v2)."""
    from kanaria.modelgen import mlp_classifier

    return {
        "v1": mlp_classifier(folder / "v1.onnx", layers=(WIDTH, 32, 4), seed=1),
        "v2": mlp_classifier(folder / "v2.onnx", layers=(WIDTH, 32, 4), seed=2),
        "v2same": mlp_classifier(folder / "v2same.onnx", layers=(WIDTH, 32, 4), seed=2),
    }


def mlp_models(folder: Path, versions: tuple[str, ...]) -> dict[str, Path]:
    """One classifier per version name, each with its own weights."""
    from kanaria.modelgen import mlp_classifier

    return {
        v: mlp_classifier(folder / f"{v}.onnx", layers=(WIDTH, 32, 4), seed=10 + i)
        for i, v in enumerate(versions)
    }


def canary(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"canary": {"steps": list(steps)}}


def md(
    version: str,
    uri: Path,
    strategy: dict[str, Any],
    server_args: list[str] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    **analysis: Any,
) -> dict[str, Any]:
    """A ModelDeployment document with short intervals for tests."""
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"version": version, "uri": str(uri)},
            "server": {"args": server_args or []},
            "router": {"stickyKey": {"header": "x-user-id"}},
            "strategy": strategy,
            "analysis": {
                "interval": f"{INTERVAL_S:g}s",
                "failureLimit": 0,
                "minRequests": 3,
                "metrics": metrics
                if metrics is not None
                else [
                    {"name": "success-rate", "builtin": "successRate", "min": 0.95},
                    {"name": "p99-latency", "builtin": "latencyP99", "max": 0.8},
                ],
                **analysis,
            },
        },
    }


class Up:
    """One ``kanaria up`` child process and its state directory."""

    def __init__(self, workdir: Path, prometheus: str, port: int | None = None) -> None:
        self.workdir = workdir
        self.root = workdir / "state"
        self.dir = StateDir.for_model(self.root, NAME)
        self.prometheus = prometheus
        self.port = port or free_port()
        self.proc: Process | None = None
        self.runs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, document: dict[str, Any]) -> Path:
        version = document["spec"]["model"]["version"]
        path = self.workdir / f"md-{version}-{len(list(self.workdir.glob('md-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def start(
        self,
        document: dict[str, Any],
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Start ``kanaria up -f`` and wait until ``until`` (default: stable is Healthy)."""
        path = self.write(document)
        self.runs += 1
        self.proc = start(
            kanaria(
                "up", "-f", str(path), "--state-dir", str(self.root),
                "--prometheus", self.prometheus, "--port", str(self.port),
            ),
            self.workdir / "logs",
            f"up-{self.runs}",
        )  # fmt: skip
        check = until or (lambda s: s.get("phase") == "Healthy")
        self.wait("kanaria up to serve", lambda s: self.serving() and check(s), 120)

    def serving(self) -> bool:
        """This run of ``kanaria up`` owns the state directory and has made its first pass."""
        try:
            data = json.loads(self.dir.state_file.read_text())
        except (OSError, ValueError):
            return False
        # "serving at" is printed once the first engine pass has been applied.
        return (
            self.proc is not None
            and data.get("upPid") == self.proc.pid
            and "serving at" in self.proc.output()
        )

    def apply(self, document: dict[str, Any]) -> None:
        path = self.write(document)
        result = subprocess.run(
            kanaria("apply", "-f", str(path), "--state-dir", str(self.root)),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            kanaria(*args, NAME, "--state-dir", str(self.root)),
            capture_output=True,
            text=True,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.dir.state_file.read_text())["status"]
        except (OSError, ValueError, KeyError):
            return {}
        return data

    def history(self) -> list[HistoryPoint]:
        return self.dir.read_history()

    def wait(
        self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        def ok() -> bool:
            if self.proc is not None and not self.proc.alive():
                raise RuntimeError(f"kanaria up exited:\n{self.proc.output()[-3000:]}")
            return check(self.status())

        try:
            wait_until(ok, timeout, what, interval=0.2)
        except TimeoutError as exc:
            log = self.proc.output()[-3000:] if self.proc else ""
            raise AssertionError(f"{exc}\nstatus: {self.status()}\n--- up log ---\n{log}") from exc
        return self.status()

    def kill(self) -> None:
        """SIGKILL ``kanaria up`` alone: its children keep running, as after a crash."""
        assert self.proc is not None
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=30)


def stable(status: dict[str, Any]) -> str | None:
    return (status.get("stable") or {}).get("version")


def settled_on(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("phase") == "Healthy" and stable(s) == version


def rolled_back(version: str) -> Callable[[dict[str, Any]], bool]:
    """The rollout of ``version`` ended in a rollback (not an earlier one's)."""
    return lambda s: (
        s.get("phase") == "RolledBack" and (s.get("candidate") or {}).get("version") == version
    )


def rounds_to_rollback(history: list[HistoryPoint], candidate: str) -> tuple[int, float]:
    """Analysis rounds, and seconds, from the candidate's first traffic to 100% stable.

    Rounds are counted from the engine's own record (history points that carry
    measurements of the candidate); seconds from the history timestamps.
    """
    first = next(
        i for i, p in enumerate(history) if p.candidate == candidate and p.weights.get(candidate)
    )
    end = next(
        i
        for i, p in enumerate(history)
        if i > first and p.phase == "RolledBack" and not p.weights.get(candidate)
    )
    rounds = sum(
        1
        for p in history[first + 1 : end + 1]
        if any(m.get("version") == candidate for m in p.measurements)
    )
    return rounds, history[end].t - history[first].t


def python() -> str:
    return sys.executable
