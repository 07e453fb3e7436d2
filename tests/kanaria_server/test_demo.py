"""`python -m kanaria_server.demo` runs its tour end to end and stops its server."""

from __future__ import annotations

import subprocess
import sys


def test_demo_finishes_by_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kanaria_server.demo"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "predicted classes:" in done.stdout
    assert "-> HTTP 400" in done.stdout
    assert '"unknown": ["never-seen"]' in done.stdout
    assert "Server stopped (exit code 0)" in done.stdout
