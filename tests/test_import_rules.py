"""The import rules (docs/contracts.md) hold for the tree as committed; the checker sees them."""

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


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    """A throwaway tree with the same package names as the real one."""
    packages = {}
    for package in ("kanaria", "kanaria_server", "kanaria_router", "kanaria_operator"):
        root = tmp_path / package
        root.mkdir()
        (root / "__init__.py").write_text("")
        packages[package] = root
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return packages


def test_every_exception_names_a_module_of_the_tree() -> None:
    checker = _checker()
    assert checker.CORE_EXCEPTIONS
    for module in checker.CORE_EXCEPTIONS:
        assert checker.module_exists(module), module


def test_checker_reports_an_exception_for_a_missing_module(tmp_path: Path) -> None:
    packages = _tree(tmp_path, {"kanaria/kube_io.py": "import kubernetes\n"})
    found = _checker().violations(packages, {"kanaria.kube": {"kubernetes"}})
    assert any("exception for kanaria.kube, which is not a module" in v for v in found), found
    assert any("core module kanaria.kube_io imports kubernetes" in v for v in found), found


def test_checker_sees_the_string_imports_of_the_cli() -> None:
    checker = _checker()
    targets = {name for _, name in checker.string_imports(ROOT / "kanaria" / "cli.py")}
    assert {"kanaria_server.cli", "kanaria_router.cli", "kanaria_operator.cli"} <= targets
    assert {"kanaria.local.cli_up", "kanaria.control_cli", "kanaria.crd_cli"} <= targets
    assert all(checker.module_exists(t) for t in targets), targets


def test_checker_catches_string_imports(tmp_path: Path) -> None:
    cli = (
        "import importlib\n"
        "COMMANDS = {\n"
        '    "route": Command("kanaria_router.cli", "run the router", "router"),\n'
        '    "gone": Command("kanaria.local.cli_gone", "a module that is not there", ""),\n'
        "}\n"
    )
    other = (
        'import importlib\nimportlib.import_module("kanaria_operator.cli")\n__import__("kopf")\n'
    )
    router = 'from importlib import import_module\nimport_module("kanaria_server.cli")\n'
    packages = _tree(
        tmp_path,
        {
            "kanaria/cli.py": cli,
            "kanaria/other.py": other,
            "kanaria_router/cli.py": router,
            "kanaria_operator/cli.py": "",
            "kanaria_server/cli.py": "",
        },
    )
    found = sorted(v.split(": ", 1)[1] for v in _checker().violations(packages, {}))
    assert found == [
        "component kanaria_router imports component kanaria_server",
        "core module kanaria.other imports component kanaria_operator",
        "core module kanaria.other imports kopf",
        "kanaria.cli imports kanaria.local.cli_gone by name; no such module",
    ]


def test_checker_names_the_modules_of_an_import_cycle(tmp_path: Path) -> None:
    """Module-level imports count (TYPE_CHECKING and relative ones too), lazy ones do not."""
    packages = _tree(
        tmp_path,
        {
            "kanaria_server/app.py": "from kanaria_server.infer import handler\n",
            "kanaria_server/infer.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from kanaria_server.state import State\n"
            ),
            "kanaria_server/state.py": "from . import app\n",
            # a package re-exporting its submodules is not a cycle with them
            "kanaria/rollout/__init__.py": "from kanaria.rollout.engine import decide\n",
            "kanaria/rollout/engine.py": "from kanaria.rollout import types\n",
            "kanaria/rollout/types.py": "import kanaria.rollout.engine\n",
            # an import inside a function is lazy: no cycle
            "kanaria_router/a.py": "import kanaria_router.b\n",
            "kanaria_router/b.py": "def f() -> None:\n    import kanaria_router.a\n",
        },
    )
    checker = _checker()
    cycles = checker.import_cycles(packages)
    assert [line.split(" (")[0] for line in cycles] == [
        "import cycle: kanaria.rollout.engine -> kanaria.rollout.types -> kanaria.rollout.engine",
        "import cycle: kanaria_server.app -> kanaria_server.infer -> kanaria_server.state"
        " -> kanaria_server.app",
    ]
    assert "kanaria_server/infer.py:3" in cycles[1], cycles
    assert set(cycles) <= set(checker.violations(packages, {}))


def test_tree_has_no_import_cycle() -> None:
    assert _checker().import_cycles() == []
