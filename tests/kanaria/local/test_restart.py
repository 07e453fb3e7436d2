"""Killing and restarting ``kanaria up`` mid-rollout resumes it at the same step.

This module runs without Prometheus (``--prometheus off``), so it also covers
the embedded metric source end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kanaria.local.traffic import TrafficGenerator
from tests.kanaria.local.harness import NAME, WIDTH, Up, build_models, canary, md, settled_on
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow

STEPS = canary({"setWeight": 30}, {"pause": {}}, {"setWeight": 60})


def _paused_at_30(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("phase") == "Paused" and s.get("weights", {}).get(version) == 30


def test_restart_mid_rollout_resumes_at_the_same_step(up: Up) -> None:
    models = build_models(up.workdir / "models")
    up.start(md("v1", models["v1"], STEPS))
    traffic = TrafficGenerator(up.url, NAME, WIDTH, rate=20, workers=4).start()
    try:
        v2 = md("v2", models["v2"], STEPS)
        up.apply(v2)
        before = up.wait("the pause step at 30%", _paused_at_30("v2"))
        state = up.dir.load()
        pids = {v: r.process.pid for v, r in state.versions.items() if r.process}
        router_pid = state.router.pid if state.router else None

        # 1. kanaria up crashes: its children keep serving; a new one adopts them.
        up.kill()
        failed_before = traffic.stats.not_injected_failures()
        up.start(v2, until=lambda s: s.get("phase") == "Paused")
        after = up.status()
        assert after["currentStep"] == before["currentStep"]
        assert after["weights"] == before["weights"] == {"v1": 70, "v2": 30}
        state = up.dir.load()
        assert {v: r.process.pid for v, r in state.versions.items() if r.process} == pids
        assert state.router is not None
        assert state.router.pid == router_pid
        assert traffic.stats.not_injected_failures() == failed_before
        assert up.proc is not None
        assert "adopted v2" in up.proc.output()

        # 2. kanaria up is stopped cleanly (children stopped by PID) and started again.
        up.stop()
        for pid in [*pids.values(), router_pid]:
            assert pid is not None
            assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
        up.start(v2, until=_paused_at_30("v2"))
        again = up.status()
        assert again["currentStep"] == before["currentStep"]
        wait_until(
            lambda: httpx.get(f"{up.url}/v2/health/ready", timeout=1).status_code == 200,
            30,
            "the router",
        )

        # 3. The rollout goes on from there.
        result = up.command("promote", "--full")
        assert result.returncode == 0, result.stderr
        up.wait("v2 promoted", settled_on("v2"))
    finally:
        traffic.stop()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
