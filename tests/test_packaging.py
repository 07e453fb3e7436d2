"""The wheel holds every module and data file of every package, as users install it.

The editable install that the test suite runs on maps the source tree, so it
cannot show a package missing from the wheel (the operator image once
crash-looped on ``No module named 'kanaria.analysis'``). This test builds the
wheel from a copy of the sources, installs it into a fresh virtualenv and
imports every module found by walking the source tree, so a new module is
covered without editing this file.

The fresh virtualenv borrows the third-party dependencies from the running
environment (a path entry after its own site-packages) instead of downloading
them again; every Kanaria module must then be loaded from the fresh
site-packages, which the check below asserts. The images install the wheel
with its dependencies for real (tests/test_images.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


# Child processes see neither the checkout (cwd) nor PYTHONPATH: pip would take the
# checkout's kanaria.egg-info for an installed kanaria and install nothing.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def package_roots() -> dict[str, Path]:
    """Top-level import package -> its source folder (setuptools' package-dir)."""
    mapping: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
    return {name: REPO / folder for name, folder in mapping.items()}


def source_files(root: Path) -> list[Path]:
    """Every file of a package tree that belongs in the wheel (no caches)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )


def module_names() -> list[str]:
    """Dotted names of every module of every package (``__main__`` excluded: it runs)."""
    names: list[str] = []
    for package, root in package_roots().items():
        for path in source_files(root):
            if path.suffix != ".py" or path.stem == "__main__":
                continue
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


def test_source_walk_finds_the_subpackages() -> None:
    """The walk itself sees what the wheel must hold (guards the test, not the wheel)."""
    names = set(module_names())
    for expected in (
        "kanaria.analysis",
        "kanaria.local",
        "kanaria.monitoring",
        "kanaria.rollout",
        "kanaria_server",
        "kanaria_router",
        "kanaria_operator.runner",
    ):
        assert expected in names


def _copy_sources(dest: Path) -> None:
    """What a build from an sdist or a clean clone sees: pyproject, README, packages."""
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy2(REPO / "README.md", dest / "README.md")
    for root in package_roots().values():
        shutil.copytree(
            root,
            dest / root.relative_to(REPO),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )


IMPORT_ALL = """
import importlib, json, sys
names = json.loads(sys.argv[1])
failed = {}
files = {}
for name in names:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
        continue
    files[name] = list(getattr(module, "__path__", [])) or [module.__file__]
print(json.dumps({"failed": failed, "files": files}))
"""


@pytest.mark.slow
def test_wheel_installs_every_module_and_data_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _copy_sources(src)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
        check=True, timeout=300, cwd=tmp_path, env=CLEAN_ENV,
    )  # fmt: skip
    (wheel,) = dist.glob("kanaria-*.whl")

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=CLEAN_ENV
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--quiet", str(wheel)],
        check=True, timeout=300, cwd=tmp_path, env=CLEAN_ENV,
    )  # fmt: skip
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True, cwd=tmp_path, env=CLEAN_ENV,
        ).stdout.strip()
    )  # fmt: skip
    # Third-party dependencies from this environment, searched after the wheel's files.
    (site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    for package, root in package_roots().items():
        missing = [
            str(p.relative_to(REPO))
            for p in source_files(root)
            if not (site / package / p.relative_to(root)).is_file()
        ]
        assert not missing, f"files of {package} missing from the wheel: {missing}"

    names = module_names()
    result = subprocess.run(
        # -I: no current directory or PYTHON* variables on sys.path, so nothing
        # resolves to the checkout
        [str(python), "-I", "-c", IMPORT_ALL, json.dumps(names)],
        check=True, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=CLEAN_ENV,
    )  # fmt: skip
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["failed"] == {}, f"modules that do not import from the wheel: {report['failed']}"
    outside = {
        name: files
        for name, files in report["files"].items()
        if not all(Path(f).is_relative_to(site) for f in files)
    }
    assert outside == {}, f"modules loaded from outside the installed wheel: {outside}"
