"""The README's first run, as a new user makes it: ``kanaria up -f md.yaml`` with no
``--state-dir``, from wherever the file is, with a real Prometheus (issue 14).

- The default ``./.kanaria`` from a working directory that is not the project root
  must measure and promote (a relative targets path made Prometheus scrape nothing).
- A Prometheus that scrapes nothing must say so in ``kanaria status`` and in the
  measurement reason, not only as quiet Inconclusive rounds.
- A shadow starved of copies must say so too (its mirror worker is stopped with
  SIGSTOP here: a process that gets no CPU at all, which is what starvation is).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanaria.local.statedir import LocalState, StateDir
from kanaria.local.traffic import TrafficGenerator
from tests.kanaria.local.harness import NAME, WIDTH, build_models, canary, md, settled_on
from tests.support import procs

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

STEPS = canary({"setWeight": 50}, {"pause": {"duration": "2s"}})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def prometheus() -> str:
    return os.environ.get("KANARIA_TEST_PROMETHEUS") or procs.require_binary(
        "prometheus", "the first-run path runs a real Prometheus"
    )


class FirstRun:
    """``kanaria up`` and the verbs run from ``cwd``, the way the README shows them."""

    def __init__(self, cwd: Path, state_args: list[str]) -> None:
        self.cwd = cwd
        self.state_args = state_args
        self.port = procs.free_port()
        self.proc: procs.Process | None = None
        root = Path(state_args[1]) if state_args else cwd / ".kanaria"
        self.dir = StateDir.for_model(root, NAME)

    def write(self, document: dict[str, Any]) -> str:
        name = f"md-{document['spec']['model']['version']}.yaml"
        (self.cwd / name).write_text(yaml.safe_dump(document, sort_keys=False))
        return name  # relative, as a user types it

    def up(self, document: dict[str, Any], prometheus: str, env: dict[str, str]) -> None:
        self.proc = procs.start(
            procs.kanaria("up", "-f", self.write(document), "--prometheus", prometheus,
                          "--port", str(self.port), *self.state_args),
            self.cwd / "logs",
            "up",
            env=env,
            cwd=self.cwd,
        )  # fmt: skip
        self.wait("kanaria up serving", lambda s: s.get("phase") == "Healthy", 120)
        procs.wait_until(lambda: "serving at" in self.proc_output(), 30, "the serving line")

    def proc_output(self) -> str:
        return self.proc.output() if self.proc is not None else ""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            procs.kanaria(*args, *self.state_args),
            capture_output=True,
            text=True,
            cwd=self.cwd,
            check=False,
            timeout=60,
        )

    def apply(self, document: dict[str, Any]) -> None:
        result = self.run("apply", "-f", self.write(document))
        assert result.returncode == 0, result.stderr

    def state(self) -> LocalState:
        return self.dir.load()

    def status(self) -> dict[str, Any]:
        try:
            return self.state().status
        except Exception:  # not written yet, or being replaced
            return {}

    def wait(
        self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        def ok() -> bool:
            if self.proc is not None and not self.proc.alive():
                raise AssertionError(f"kanaria up exited:\n{self.proc_output()[-3000:]}")
            return check(self.status())

        try:
            procs.wait_until(ok, timeout, what, interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}\nstatus: {json.dumps(self.status())[:3000]}\n--- up log ---\n"
                f"{self.proc_output()[-3000:]}"
            ) from exc
        return self.status()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=30)


@pytest.fixture
def first_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FirstRun]:
    """A working directory that is not the project root, no KANARIA_STATE_DIR."""
    monkeypatch.delenv("KANARIA_STATE_DIR", raising=False)
    cwd = tmp_path / "my-models"
    cwd.mkdir()
    assert not (cwd / "pyproject.toml").exists()
    run = FirstRun(cwd, [])
    try:
        yield run
    finally:
        run.stop()


def _reasons(status: dict[str, Any], version: str) -> list[str]:
    return [
        m.get("reason", "") for m in status.get("measurements", []) if m.get("version") == version
    ]


def test_default_state_dir_from_another_directory_measures_and_promotes(
    first_run: FirstRun, models: dict[str, Path], prometheus: str
) -> None:
    first_run.up(md("v1", models["v1"], STEPS), prometheus, {})
    state = first_run.state()
    assert first_run.dir.path == first_run.cwd / ".kanaria" / NAME
    assert f"state and logs in {first_run.dir.path}" in first_run.proc_output()
    # The targets file Prometheus watches is named by an absolute path that exists.
    config = yaml.safe_load((first_run.dir.prometheus_dir / "prometheus.yml").read_text())
    (watched,) = config["scrape_configs"][0]["file_sd_configs"][0]["files"]
    assert Path(watched).is_absolute(), watched
    assert Path(watched).is_file(), watched
    assert state.metricsUrl is not None
    traffic = TrafficGenerator(f"http://127.0.0.1:{first_run.port}", NAME, WIDTH, 25, 4)
    traffic.start()
    try:
        first_run.apply(md("v2", models["v2"], STEPS))
        status = first_run.wait("v2 promoted", settled_on("v2"), 90)
    finally:
        traffic.stop()
    history = first_run.dir.read_history()
    verdicts = [m["verdict"] for p in history for m in p.measurements if m["version"] == "v2"]
    assert "Successful" in verdicts, verdicts
    # Before Prometheus first scrapes v2 a gate has no data and holds (Inconclusive);
    # what promoted must be a pass whose every verdict was measured and Successful.
    last = [p.measurements for p in history if any(m["version"] == "v2" for m in p.measurements)][
        -1
    ]
    assert {m["verdict"] for m in last if m["version"] == "v2"} == {"Successful"}, last
    assert all(m["value"] is not None for m in last if m["version"] == "v2"), last
    assert status["weights"] == {"v2": 100}
    assert traffic.stats.not_injected_failures() == 0, dict(traffic.stats.errors)
    shown = first_run.run("status", NAME)
    assert shown.returncode == 0, shown.stderr
    assert "PROBLEM" not in shown.stdout, shown.stdout


def _blind_prometheus(tmp_path: Path, real: str) -> Path:
    """A launcher for the real Prometheus that swaps in a configuration whose file_sd
    path is relative: Prometheus resolves it against the configuration's folder, finds
    no file and scrapes nothing (the shape of the bug this issue fixed)."""
    folder = tmp_path / "blind"
    folder.mkdir()
    config = folder / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "500ms"},
                "scrape_configs": [
                    {
                        "job_name": "kanaria-local",
                        "file_sd_configs": [{"files": [".kanaria/fraud/prometheus/targets.json"]}],
                    }
                ],
            }
        )
    )
    launcher = folder / "prometheus"
    launcher.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"args = [a if not a.startswith('--config.file=') else '--config.file={config}'\n"
        "        for a in sys.argv[1:]]\n"
        f"os.execv({real!r}, [{real!r}, *args])\n"
    )
    launcher.chmod(0o755)
    return launcher


def test_a_prometheus_that_scrapes_nothing_is_named_in_status_and_reasons(
    first_run: FirstRun, models: dict[str, Path], prometheus: str, tmp_path: Path
) -> None:
    first_run.up(md("v1", models["v1"], STEPS), str(_blind_prometheus(tmp_path, prometheus)), {})
    traffic = TrafficGenerator(f"http://127.0.0.1:{first_run.port}", NAME, WIDTH, 25, 4)
    traffic.start()
    try:
        first_run.apply(md("v2", models["v2"], STEPS))
        status = first_run.wait(
            "a measurement that names the cause",
            lambda s: any("scrapes nothing" in r for r in _reasons(s, "v2")),
            60,
        )
        procs.wait_until(lambda: bool(first_run.state().problems), 30, "a problem in the state")
    finally:
        traffic.stop()
    reason = next(r for r in _reasons(status, "v2") if "scrapes nothing" in r)
    assert reason.startswith("no requests in 2s"), reason
    assert f"Prometheus at {first_run.state().metricsUrl} scrapes nothing" in reason
    assert status["weights"].get("v2", 0) <= 50  # held, never promoted on missing data
    shown = first_run.run("status", NAME)
    assert shown.returncode == 0, shown.stderr
    targets = first_run.dir.prometheus_dir / "targets.json"
    assert "PROBLEM: Prometheus scrapes none of the" in shown.stdout, shown.stdout
    assert str(targets) in shown.stdout, shown.stdout
    assert "scrapes nothing" in shown.stdout  # the measurement's reason is shown too


SHADOW = {"shadow": {"mirrorPercent": 100, "analysis": {"rounds": 2}, "graduateTo": "none",
                     "duration": "1h"}}  # fmt: skip


@pytest.mark.parametrize("metric_source", ["prometheus", "off"])
def test_a_shadow_starved_of_copies_says_so(
    first_run: FirstRun, models: dict[str, Path], prometheus: str, metric_source: str
) -> None:
    # Small copy bounds: with the worker stopped, the third copy on is dropped.
    env = {"KANARIA_MIRROR_QUEUE_SIZE": "1", "KANARIA_MIRROR_CONCURRENCY": "1"}
    binary = prometheus if metric_source == "prometheus" else "off"
    gates = [{"name": "success-rate", "builtin": "successRate", "min": 0.95}]
    first_run.up(md("v1", models["v1"], STEPS, metrics=gates), binary, env)
    traffic = TrafficGenerator(f"http://127.0.0.1:{first_run.port}", NAME, WIDTH, 25, 4)
    traffic.start()
    worker: int | None = None
    try:
        first_run.apply(md("v2", models["v2"], SHADOW, metrics=gates))
        first_run.wait("v2 judged on its copies", lambda s: "Successful" in [
            m.get("verdict") for m in s.get("measurements", []) if m.get("version") == "v2"
        ], 60)  # fmt: skip
        router = first_run.state().router
        assert router is not None
        (worker,) = procs.children(router.pid, "kanaria_router.mirror_worker")
        os.kill(worker, signal.SIGSTOP)  # no CPU at all from now on
        status = first_run.wait(
            "a measurement that says the shadow is starved",
            lambda s: any("starved of copies" in r for r in _reasons(s, "v2")),
            60,
        )
        procs.wait_until(
            lambda: any("starved" in p for p in first_run.state().problems), 30, "the problem"
        )
        shown = first_run.run("status", NAME)
        os.kill(worker, signal.SIGCONT)
        worker = None
        procs.wait_until(lambda: not first_run.state().problems, 60, "the problem to clear")
    finally:
        if worker is not None:
            os.kill(worker, signal.SIGCONT)
        traffic.stop()
    reason = next(r for r in _reasons(status, "v2") if "starved" in r)
    assert "shadow v2 is starved of copies: the router dropped" in reason, reason
    assert "KANARIA_MIRROR_PRIORITY" in reason
    assert status["phase"] == "Progressing"
    assert status["weights"].get("v2", 0) == 0
    assert shown.returncode == 0, shown.stderr
    assert "PROBLEM: shadow v2 is starved of copies" in shown.stdout, shown.stdout
