"""Fixtures of the review-path tests: a real Label Studio (session-scoped, skipped with
the install command as reason when it is not installed, failed under
``KANARIA_REQUIRE_ALL=1``). Registered here rather than in tests/conftest.py: only
these tests use it."""

from __future__ import annotations

from tests.support.labelstudio import label_studio

__all__ = ["label_studio"]
