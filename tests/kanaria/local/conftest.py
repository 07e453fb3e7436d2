"""Fixtures of the ``kanaria up`` tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kanaria.local.harness import Up


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    """A ``kanaria up`` with the embedded metric source (``--prometheus off``), stopped after."""
    runtime = Up(tmp_path, "off")
    try:
        yield runtime
    finally:
        runtime.stop()
