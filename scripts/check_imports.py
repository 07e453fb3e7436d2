"""Enforce the import rules of DESIGN.md with the ast module (no third-party tool).

- The core ``kanaria`` imports no FastAPI, kopf or Kubernetes client, except in
  the few modules listed below whose job is exactly that.
- Components (kanaria_server, kanaria_router, kanaria_operator) never import
  each other; they share code only through the core.

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
    "kanaria.kube": {"kubernetes"},
    "kanaria.control_cli": {"kubernetes"},
}


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


def module_name(package: str, root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def violations() -> list[str]:
    out: list[str] = []
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            mod = module_name(package, root, path)
            allowed = next(
                (v for k, v in CORE_EXCEPTIONS.items() if mod == k or mod.startswith(k + ".")),
                set(),
            )
            for lineno, name in imported_roots(path):
                where = f"{path.relative_to(ROOT)}:{lineno}"
                if package == "kanaria":
                    if name in CORE_FORBIDDEN and name not in allowed:
                        out.append(f"{where}: core module {mod} imports {name}")
                    if name in COMPONENTS:
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
            f"{len(problems)} import rule violation(s); see DESIGN.md 'Components'", file=sys.stderr
        )
        return 1
    print("import rules: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
