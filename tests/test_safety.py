"""User files are parsed, never executed or unpickled.

A source scan (AST, so comments and docstrings do not count) pins the rules for every
module of the four packages and the benchmarks: YAML only through ``yaml.safe_load``,
``torch.load`` and ``load_from_checkpoint`` only with ``weights_only=True``, and no
pickle, eval or exec on anything. Behavioural tests check that a booby-trapped file
is refused without running its payload.
"""
from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_space", "trainers", "controllers", "analysis", "benchmarks")
# Ray writes this pickle itself, next to the driver, for a trial of this very run (it is
# what Tune's own Trial.get_error reads); no user file is ever unpickled.
ALLOWED = {("controllers/tune/searcher.py", "cloudpickle.load")}   # Ray's own error pickle, written by this driver
UNSAFE_CALLS = {"pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "dill.load",
                "dill.loads", "marshal.load", "marshal.loads", "shelve.open", "joblib.load",
                "yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all",
                "yaml.full_load_all", "pd.read_pickle", "pandas.read_pickle", "eval", "exec"}
NEEDS_WEIGHTS_ONLY = ("torch.load", "load_from_checkpoint")


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return "?"


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node, dotted(node.func)


def weights_only_true(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def test_the_scan_sees_the_code():
    names = {name for path in sources() for _, name in calls(path)}
    assert "yaml.safe_load" in names and "torch.load" in names and len(sources()) > 40


def violations(paths: list[Path], root: Path = ROOT) -> list[str]:
    """Every unsafe load/eval and every torch load without ``weights_only=True``."""
    found = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        for node, name in calls(path):
            where = f"{rel}:{node.lineno}: {name}"
            if (name in UNSAFE_CALLS or name.endswith(".unsafe_load")) and (rel, name) not in ALLOWED:
                found.append(where)
            if name in ("np.load", "numpy.load") and not any(
                    k.arg == "allow_pickle" and getattr(k.value, "value", None) is False for k in node.keywords):
                found.append(f"{where} without allow_pickle=False")
            if name.endswith(NEEDS_WEIGHTS_ONLY) and not weights_only_true(node):
                found.append(f"{where} without weights_only=True")
    return found


def test_no_unsafe_load_eval_or_torch_load_without_weights_only():
    found = violations(sources())
    assert not found, "unsafe loads:\n" + "\n".join(found)


def test_the_scan_flags_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, yaml, pickle\n"
                   "torch.load('a')\n"
                   "torch.load('a', weights_only=False)\n"
                   "torch.load('a', weights_only=True)\n"
                   "M.load_from_checkpoint('c')\n"
                   "yaml.load(open('x'), Loader=yaml.Loader)\n"
                   "yaml.safe_load('a: 1')\n"
                   "pickle.loads(b'')\n"
                   "eval('1')\n"
                   "# torch.load('in a comment')\n")
    found = [line.split(": ", 1)[1] for line in violations([bad], tmp_path)]
    assert found == ["torch.load without weights_only=True", "torch.load without weights_only=True",
                     "M.load_from_checkpoint without weights_only=True", "yaml.load", "pickle.loads", "eval"]


class _Payload:
    """Unpickling this runs ``os.system`` (what a hostile checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_booby_trapped_resume_state_is_refused_not_run(tmp_path):
    torch = pytest.importorskip("torch")
    from dynas.search_space.errors import DynasError
    from dynas.trainers.fitting import load_state

    marker = tmp_path / "pwned"
    path = tmp_path / "resume.pt"
    torch.save({"format": 1, "model": _Payload(marker)}, path)
    with pytest.raises(DynasError, match="unreadable resume state"):
        load_state(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(_Payload(marker)))          # a bare pickle, too
    with pytest.raises(DynasError):
        load_state(path)
    assert not marker.exists()


def test_a_pickle_posing_as_an_arch_or_run_file_is_just_bad_json(tmp_path):
    from dynas.controllers.records import RUN_FILE, read_run
    from dynas.search_space.arch import ArchConfig
    from dynas.search_space.errors import ConfigError, DynasError

    marker = tmp_path / "pwned"
    blob = pickle.dumps(_Payload(marker))
    (tmp_path / "arch.json").write_bytes(blob)
    with pytest.raises(ConfigError, match="not valid JSON"):
        ArchConfig.load(tmp_path / "arch.json")
    (tmp_path / RUN_FILE).write_bytes(blob)
    with pytest.raises(DynasError, match="not valid JSON"):
        read_run(tmp_path)
    assert not marker.exists()
