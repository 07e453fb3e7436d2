"""The import rules of DESIGN.md hold for the tree as committed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_imports", ROOT / "scripts" / "check_imports.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tree_follows_import_rules() -> None:
    assert _checker().violations() == []


def test_checker_catches_a_core_module_importing_kopf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import kopf\nfrom kanaria_router import x\n")
    roots = [name for _, name in _checker().imported_roots(bad)]
    assert roots == ["kopf", "kanaria_router"]
