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

- No import cycle among the tree's own modules. Only module-level imports
  count (those run when the module is loaded, ``if TYPE_CHECKING:`` blocks
  included: a cycle that only the type checker sees still means neither module
  can be read or moved without the other); imports inside functions are the
  sanctioned way to load something lazily and do not count. An import edge goes
  to the module named (``from a.b import c`` to ``a.b.c`` when that is a module,
  else ``a.b``), not to the parent packages Python initialises on the way,
  which is what lets a package's ``__init__`` re-export its submodules.

Exit status 1 with one line per violation, so it fails ``make lint``.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterator
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


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run when the module loads: the body, and inside if/try/with/class blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _module_level(getattr(node, name, []))
        for handler in getattr(node, "handlers", []):
            yield from _module_level(handler.body)


def _deepest_module(name: str, packages: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of the tree."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if module_exists(candidate, packages) or (end == 1 and candidate in packages):
            return candidate
    return None


def module_imports(
    mod: str, path: Path, packages: dict[str, Path] = PACKAGES
) -> list[tuple[int, str]]:
    """The tree's modules that ``mod`` imports at module level, with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in _module_level(tree.body):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = mod.split(".")[: len(mod.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _deepest_module(name, packages)
            if target is not None and target != mod:
                found.append((node.lineno, target))
    return found


def import_cycles(packages: dict[str, Path] = PACKAGES) -> list[str]:
    """One line per import cycle among the tree's modules, naming the modules in order."""
    graph: dict[str, dict[str, int]] = {}
    files: dict[str, str] = {}
    for package, root in packages.items():
        for path in sorted(root.rglob("*.py")):
            mod = module_name(package, root, path)
            files[mod] = _where(path)
            edges = graph.setdefault(mod, {})
            for lineno, target in module_imports(mod, path, packages):
                edges.setdefault(target, lineno)
    out = []
    for component in _strongly_connected(graph):
        cycle = _shortest_cycle(min(component), graph, component)
        steps = ", ".join(f"{files[a]}:{graph[a][b]}" for a, b in itertools.pairwise(cycle))
        out.append(f"import cycle: {' -> '.join(cycle)} ({steps})")
    return out


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively; only components that contain a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            nxt = next((t for t in targets if t in graph), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return sorted(found, key=min)


def _shortest_cycle(start: str, graph: dict[str, dict[str, int]], within: set[str]) -> list[str]:
    """A shortest path from ``start`` back to itself inside one strongly connected component."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if target in within and target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in no cycle")  # a component always has one


def _where(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


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
            where_file = _where(path)
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
    return out + import_cycles(packages)


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
