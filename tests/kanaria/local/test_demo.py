"""``make demo`` end to end: what a newcomer runs first must keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_three_rollouts_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "kanaria.local.demo", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout
    assert "v2 promoted" in text
    assert "v3 rolled back" in text
    assert "up to 20% of traffic" in text  # caught at the first canary step
    assert "Graduated: shadow of v4 passed" in text
    assert "Promoted: v4 is stable at 100%" in text
    assert "0 caused by the rollouts" in text
    assert (out / "rollout.png").read_bytes()[:4] == b"\x89PNG"
