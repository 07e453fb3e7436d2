"""Shared fixtures. Integration fixtures live next to the tests that use them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.support.controlplane",
    "tests.support.images",
    "tests.support.node",
    "tests.kanaria_operator.node_env",
]
"""The session-scoped ``control_plane`` and per-test ``namespace`` fixtures; the
session-scoped ``images`` (the three images built with podman, and their archives);
the real node (``real_node``) and the product on it (``platform``)."""


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """Where a test's child processes write their logs (kept by pytest on failure)."""
    d = tmp_path / "logs"
    d.mkdir()
    return d
