"""Enforce the import rules of docs/contracts.md with the ast module (no third-party tool).

- The core ``kanaria`` imports no FastAPI, kopf or Kubernetes client, except in
  the few modules listed below whose job is exactly that.
- Components (kanaria_server, kanaria_router, kanaria_operator) never import
  each other; they share code only through the core.
- The core imports no component, except ``kanaria.cli``, which loads a
  component's command module lazily by name (``Command("kanaria_router.cli", ...)``)
  so that ``kanaria up`` works without the component's extra installed.

Imports by module-name string count as imports: the first argument of
``importlib.import_module``, ``__import__`` and the CLI's ``Command``. A string
import must name a module of the tree, and every exception below must name one.

Exit status 1 with one line per violation, so it fails ``make lint``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "kanaria": ROOT / "kanaria",
    "kanaria_server": ROOT / "model_server" / "kanaria_server",
    "kanaria_router": ROOT / "router" / "kanaria_router",
    "kanaria_operator": ROOT / "operator" / "kanaria_operator",
}
COMPONENTS = {"kanaria_server", "kanaria_router", "kanaria_operator"}
CORE_FORBIDDEN = {"fastapi", "starlette", "uvicorn", "kopf", "kubernetes", "aiohttp", "onnxruntime"}
# Core modules allowed to import a forbidden library, and which ones (why: the
# module is the adapter for exactly that library).
CORE_EXCEPTIONS: dict[str, set[str]] = {
    "kanaria.control_cli": {"kubernetes"},
}
LAZY_COMPONENT_LOADERS = {"kanaria.cli"}
"""Core modules that may import components, by module-name string only."""
STRING_IMPORTERS = {"import_module", "__import__", "Command"}
"""Calls whose first argument, a string, names a module to import."""


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def string_imports(path: Path) -> list[tuple[int, str]]:
    """Modules imported by name string (``import_module("a.b")``, ``Command("a.b", ...)``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and _called_name(node.func) in STRING_IMPORTERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def imported_roots(path: Path) -> list[tuple[int, str]]:
    """Top-level package names imported by a file, with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def module_exists(name: str, packages: dict[str, Path] = PACKAGES) -> bool:
    """Whether ``name`` is a module or package of the tree (False for anything else)."""
    package, *rest = name.split(".")
    root = packages.get(package)
    if root is None:
        return False
    base = root.joinpath(*rest)
    return (base / "__init__.py").is_file() or (bool(rest) and base.with_suffix(".py").is_file())


def module_name(package: str, root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def violations(
    packages: dict[str, Path] = PACKAGES,
    exceptions: dict[str, set[str]] = CORE_EXCEPTIONS,
) -> list[str]:
    out: list[str] = [
        f"scripts/check_imports.py: exception for {mod}, which is not a module of the tree"
        for mod in sorted(exceptions)
        if not module_exists(mod, packages)
    ]
    for package, root in packages.items():
        for path in sorted(root.rglob("*.py")):
            mod = module_name(package, root, path)
            allowed = next(
                (v for k, v in exceptions.items() if mod == k or mod.startswith(k + ".")),
                set(),
            )
            try:
                where_file = str(path.relative_to(ROOT))
            except ValueError:
                where_file = str(path)
            imports = [(lineno, name, False) for lineno, name in imported_roots(path)]
            for lineno, target in string_imports(path):
                where = f"{where_file}:{lineno}"
                if target.split(".")[0] in packages and not module_exists(target, packages):
                    out.append(f"{where}: {mod} imports {target} by name; no such module")
                imports.append((lineno, target.split(".")[0], True))
            for lineno, name, by_string in imports:
                where = f"{where_file}:{lineno}"
                if package == "kanaria":
                    if name in CORE_FORBIDDEN and name not in allowed:
                        out.append(f"{where}: core module {mod} imports {name}")
                    if name in COMPONENTS and not (by_string and mod in LAZY_COMPONENT_LOADERS):
                        out.append(f"{where}: core module {mod} imports component {name}")
                elif name in COMPONENTS and name != package:
                    out.append(f"{where}: component {package} imports component {name}")
    return out


def main() -> int:
    problems = violations()
    for line in problems:
        print(line)
    if problems:
        print(
            f"{len(problems)} import rule violation(s); see docs/contracts.md 'Import rules'",
            file=sys.stderr,
        )
        return 1
    print("import rules: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
