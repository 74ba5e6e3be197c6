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


def layer_of(module: str) -> str:
    """``dynas.trainers.fitting`` -> ``trainers``; a third-party module -> its top level."""
    parts = module.split(".")
    return parts[1] if parts[0] == "dynas" and len(parts) > 1 else parts[0]


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {layer_of(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(layer_of(node.module))
    return names


def bare_imports(path: Path) -> set[str]:
    """Imports of a layer by its bare name (``import analysis``), which only work from the
    repository root and would load a second copy of the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] in ORDER}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in ORDER:
            found.add(node.module)
    return found


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


def test_every_module_imports_the_layers_through_the_dynas_namespace():
    trees = [ROOT / name for name in (*ORDER, "tests", "benchmarks", "examples")]
    offenders = {f"{path.relative_to(ROOT)}: {name}" for tree in trees for path in sorted(tree.rglob("*.py"))
                 for name in bare_imports(path)}
    assert not offenders, sorted(offenders)


def test_pyproject_installs_every_package_under_dynas():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"dynas"} | {"dynas." + ".".join(init.parent.relative_to(ROOT).parts)
                           for package in ORDER for init in (ROOT / package).rglob("__init__.py")}
    assert listed == on_disk


def test_search_space_loads_without_torch():
    code = ("import sys, dynas.search_space, dynas.search_space.space, dynas.search_space.cost; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("dynas", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The dynas ``modules`` that ``path`` imports, at module level or inside a function,
    relative imports resolved. ``from package import module`` is an import of that module
    (a package's ``__init__`` runs before any of its modules anyway, as import-linter
    and pydeps count it); ``from module import name`` of that module."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            named = {f"{base}.{alias.name}" for alias in node.names}
            found |= (named & modules) or {base}
    return found & modules


def import_graph(package: str) -> dict[str, set[str]]:
    modules = {module_name(path): path for path in modules_of(package)}
    return {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", ORDER)
def test_no_import_cycles_inside_a_package(package):
    """Counting imports inside functions too: a cycle held together by lazy imports is
    still a cycle (a package's ``__init__`` re-exporting its modules lazily is not
    counted: it imports them by string, for the public surface only)."""
    assert cycles(import_graph(package)) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
