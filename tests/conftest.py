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


BUILT_FIXTURES = frozenset({"control_plane", "images", "real_node", "label_studio"})
"""Fixtures that need what ``make test`` builds while the other tests run: the control
plane (Go, compiled from the module proxy), the three images (podman) and Label Studio
(its own venv)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a built part ``built`` (marked ``controlplane`` or
    ``realnode``, or asking for a built fixture itself or through another fixture), so
    that ``make test`` can run the rest while the control plane compiles
    (``-m "not built"``), then these (``-m built``)."""
    for item in items:
        needs = BUILT_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if needs or item.get_closest_marker("controlplane") or item.get_closest_marker("realnode"):
            item.add_marker(pytest.mark.built)
