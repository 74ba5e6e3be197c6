"""``pip install .`` puts one name at the top of site-packages: ``dynas``.

A real install of the package (pip, setuptools, the pyproject as written) into a
fresh folder, as ``--target`` stands in for site-packages. Generic names (``analysis``,
``trainers``...) at the top would shadow a user's own modules. Offline: no
dependencies (``--no-deps``) and the build backend this interpreter already has
(``--no-build-isolation``: an isolated build environment would download setuptools).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("search_space", "trainers", "controllers", "analysis")
SOURCE = ("pyproject.toml", "README.md", "__init__.py", *LAYERS)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package installed with pip into a fresh folder (built from a copy of the
    source, so the build leaves no ``build/`` or ``*.egg-info`` in the worktree)."""
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("pip cannot build offline here: this interpreter lacks pip or setuptools")
    src, target = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site-packages")
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--no-compile", "--quiet", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return target


def test_only_dynas_lands_at_the_top(installed):
    top = {p.name for p in installed.iterdir()}
    metadata = {n for n in top if n.endswith(".dist-info")}
    assert top - metadata - {"bin"} == {"dynas"}, sorted(top)
    assert not top & {*LAYERS, "tests", "examples", "benchmarks", "docs"}


def test_the_four_layers_install_inside_dynas(installed):
    package = installed / "dynas"
    assert (package / "__init__.py").read_text() == (ROOT / "__init__.py").read_text()
    for layer in LAYERS:
        source = sorted(p.relative_to(ROOT) for p in (ROOT / layer).rglob("*.py"))
        assert sorted(p.relative_to(package) for p in (package / layer).rglob("*.py")) == source, layer


def test_the_console_script_target_exists_in_the_installed_tree(installed):
    (entry_points,) = installed.glob("dynas-*.dist-info/entry_points.txt")
    assert "dynas = dynas.analysis.cli:main" in entry_points.read_text().splitlines()
    assert (installed / "bin" / "dynas").is_file()
    code = ("import dynas, dynas.analysis.cli as cli; assert callable(cli.main); "
            "print(dynas.__file__); print(cli.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=installed,
                         env={**os.environ, "PYTHONPATH": str(installed)}, check=True)
    assert out.stdout.split() == [str(installed / "dynas" / "__init__.py"),
                                  str(installed / "dynas" / "analysis" / "cli.py")]
