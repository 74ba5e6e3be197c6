"""Data flows one way: search_space -> trainers -> controllers -> analysis.

Each package may import only the packages before it and its own backends; the
lightest layer must stay importable without torch.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["search_space", "trainers", "controllers", "analysis"]
FORBIDDEN_BACKENDS = {
    "search_space": {"torch", "lightning", "ray", "optuna", "pandas", "matplotlib", "numpy"},
    "trainers": {"ray", "optuna", "pandas", "matplotlib"},
    "controllers": {"pandas", "matplotlib"},
    "analysis": set(),
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ORDER)
def test_package_imports_only_earlier_layers(package):
    later = set(ORDER[ORDER.index(package) + 1:])
    forbidden = later | FORBIDDEN_BACKENDS[package]
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of(package)
        for name in imported_top_levels(path) & forbidden
    }
    assert not offenders, sorted(offenders)


def test_search_space_loads_without_torch():
    code = "import sys, search_space, search_space.space, search_space.cost; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
