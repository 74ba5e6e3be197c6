"""Hardening, round two (issue 28): a run directory or a model folder is a boundary,
its plugins are code imported only with consent, every file it holds is read through
one checked reader, YAML is bounded and unambiguous, and refusals come before work.

The table runs the real command line in a fresh process, as ``tests/test_bad_input``
does: exit 2, exactly one line on stderr naming the file (or flag) and the key, no
traceback, and every file in the working folder byte-identical afterwards (no plugin
side effect either). Time bounds are not asserted (a shared machine may be slow); the
"before work" cases instead assert that nothing was started or written.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from dynas.controllers.records import RUN_FILE
from tests.test_bad_input import GOOD, assert_refused, variant, workdir  # noqa: F401  (the fixture)
from tests.test_bad_input import Case as FileCase
from tests.test_plugins import registries  # noqa: F401  (autouse: plugins loaded here are put back)

__all__ = ["workdir", "registries"]

# A plugin that leaves a mark where it runs (the working folder): refused = no mark.
MARKING_PLUGIN = "open('pwned', 'w').write('ran')\n"


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path], None]      # edits the working folder before the command
    argv: tuple
    expect: tuple


def edit_json(path: str, **changes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        data = json.loads((root / path).read_text())
        data.update(changes)
        (root / path).write_text(json.dumps(data))
    return setup


def write(path: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    return setup


def steps(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for one in setups:
            one(root)
    return setup


def outside_model(root: Path) -> None:
    """A folder outside the run directory that looks like kept weights."""
    (root / "precious").mkdir()
    (root / "precious" / "weights.safetensors").write_text("mine")


def weights_index(path) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        outside_model(root)
        rel = str(root / "precious") if path == "ABS" else path
        (root / "run" / "weights.json").write_text(json.dumps({"0": {"path": rel, "bytes": 4}}))
    return setup


def symlink(link: str, target: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        os.symlink(target, root / link)
    return setup


EXPORT = ("export", "run", "--weights", "--out", "exported")
RESUME = ("resume", "run", "--no-report")
REPORT = ("report", "run")

BOUNDARY_CASES = [
    Case("weights-absolute", weights_index("ABS"), EXPORT, ("weights.json", "0.path", "absolute path")),
    Case("weights-dotdot", weights_index("../precious"), EXPORT, ("weights.json", "0.path", "leads outside")),
    Case("weights-symlink", steps(weights_index("w0"), symlink("run/w0", "../precious")), EXPORT,
         ("weights.json", "0.path", "symlink")),
    Case("experiment-etc-passwd", edit_json(f"run/{RUN_FILE}", experiment="/etc/passwd"), RESUME,
         ("run.json", "experiment", "experiment.yaml")),
    Case("experiment-dotdot", edit_json(f"run/{RUN_FILE}", experiment="../good.yaml"), RESUME,
         ("run.json", "experiment")),
    Case("experiment-symlink", steps(lambda root: (root / "run" / "experiment.yaml").unlink(),
                                     symlink("run/experiment.yaml", "../good.yaml")), RESUME,
         ("run.json", "experiment", "symlink")),
]


def recorded_plugin(root: Path) -> None:
    (root / "marker.py").write_text(MARKING_PLUGIN)
    edit_json(f"run/{RUN_FILE}", plugins=[str(root / "marker.py")])(root)


TRUST_CASES = [
    Case("resume-recorded-plugin", recorded_plugin, RESUME, ("run.json", "plugins", "marker.py", "--trust-plugins")),
    Case("confirm-recorded-plugin", recorded_plugin, ("confirm", "run", "--top", "1", "--seeds", "1"),
         ("run.json", "plugins", "--plugin", "--trust-plugins")),
]

RUN_JSON_CASES = [
    Case(f"{cmd[0]}-run-json-{key}-{i}", edit_json(f"run/{RUN_FILE}", **{key: value}), cmd, ("run.json", key))
    for cmd in (RESUME, REPORT)
    for i, (key, value) in enumerate((("trials", "many"), ("trials", [1]), ("concurrent", "x"), ("seed", {}),
                                      ("plugins", 5), ("objectives", ["x"]), ("objectives", "max"),
                                      ("trials", 10**12)))
] + [Case(f"{cmd[0]}-run-json-newer", edit_json(f"run/{RUN_FILE}", schema_version=99), cmd,
          ("run.json", "schema_version", "newer dynas")) for cmd in (RESUME, REPORT)]


def records_dir(root: Path) -> None:
    (root / "run" / "trials.jsonl").unlink()
    (root / "run" / "trials.jsonl").mkdir()


def records_loop(root: Path) -> None:
    (root / "run" / "trials.jsonl").unlink()
    os.symlink("trials.jsonl", root / "run" / "trials.jsonl")


def weights_text(text: str) -> Callable[[Path], None]:
    return write("run/weights.json", text)


FILE_CASES = [
    Case("report-records-directory", records_dir, REPORT, ("trials.jsonl", "not a regular file")),
    Case("report-records-symlink-loop", records_loop, REPORT, ("trials.jsonl", "cannot be resolved")),
    Case("export-weights-corrupt", weights_text('{"0": '), EXPORT, ("weights.json", "not valid JSON")),
    Case("export-weights-list", weights_text("[1, 2]"), EXPORT, ("weights.json", "expected a JSON object")),
    Case("export-weights-no-path", weights_text('{"0": {"bytes": 3}}'), EXPORT, ("weights.json", "0.path")),
    Case("export-weights-directory", lambda root: (root / "run" / "weights.json").mkdir(), EXPORT,
         ("weights.json", "not a regular file")),
]


def refused_in_process(argv: tuple, expect: tuple, root: Path, capsys, monkeypatch) -> None:
    """``assert_refused`` through ``cli.main`` in this process (a fresh interpreter per
    case costs seconds; these cases import no plugin, so nothing leaks between them)."""
    from dynas.analysis.cli import main
    from tests.test_bad_input import snapshot

    monkeypatch.chdir(root)
    before = snapshot(root)
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in expect:
        assert fragment in err, (fragment, err)
    assert snapshot(root) == before, "a refused command changed or wrote files"


TABLE = BOUNDARY_CASES + RUN_JSON_CASES + FILE_CASES


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_run_directory_refusals(case: Case, workdir: Path, capsys, monkeypatch):
    case.setup(workdir)
    refused_in_process(case.argv, case.expect, workdir, capsys, monkeypatch)
    if (workdir / "precious").exists():
        assert (workdir / "precious" / "weights.safetensors").read_text() == "mine"


@pytest.mark.parametrize("case", TRUST_CASES, ids=[c.id for c in TRUST_CASES])
def test_recorded_plugins_need_consent(case: Case, workdir: Path):
    """In a fresh process: the refusal must come before the plugin is imported."""
    case.setup(workdir)
    assert_refused(FileCase(case.id, {}, case.argv, case.expect), workdir)


# --- YAML, plugins that exit, refusals before work ----------------------------------
BOMB = "".join(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 7))
YAML_CASES = [
    FileCase("duplicate-key", {"d.yaml": variant("trials: 2", "trials: 2\n  trials: 3")},
             ("space", "validate", "d.yaml"), ("d.yaml", "line 18", "duplicate key 'trials'", "first at line 17")),
    FileCase("duplicate-section", {"d.yaml": GOOD + "search:\n  trials: 9\n"},
             ("space", "validate", "d.yaml"), ("d.yaml", "duplicate key 'search'")),
    FileCase("alias-bomb", {"b.yaml": GOOD + "evaluator:\n  name: x\n  options:\n    l0: &l0 [1, 2, 3]\n"
                            + BOMB.replace("  l", "    l")},
             ("space", "validate", "b.yaml"), ("b.yaml", "alias bomb")),
    FileCase("alias-bomb-search", {"b.yaml": GOOD + "evaluator:\n  name: x\n  options:\n    l0: &l0 [1, 2, 3]\n"
                                   + BOMB.replace("  l", "    l")},
             ("search", "b.yaml", "--storage", "st", "--no-report"), ("b.yaml", "alias bomb")),
    FileCase("huge-file", {"h.yaml": GOOD + "#" * (2 * 1024 * 1024) + "\n"},
             ("space", "validate", "h.yaml"), ("h.yaml", "larger than")),
    FileCase("validate-baseline-too-wide", {"w.yaml": variant("concurrent: 1", "concurrent: 1\n  baselines: [mlp:4000000x2]")},
             ("space", "validate", "w.yaml"), ("w.yaml", "search.baselines[0].width")),
    FileCase("huge-list", {"l.yaml": variant("expansion: [2, 4]", "expansion: [" + ", ".join(["2"] * 20000) + "]")},
             ("space", "validate", "l.yaml"), ("l.yaml", "a list of 20000 items")),
]

PLUGIN_EXIT_CASES = [
    FileCase(f"plugin-{name}", {"p.py": body}, ("space", "validate", "good.yaml", "--plugin", "p.py"),
             ("plugin p.py", expect))
    for name, body, expect in (("exit-3", "import sys\nsys.exit(3)\n", "SystemExit 3"),
                               ("exit-0", "import sys\nsys.exit(0)\n", "SystemExit 0"),
                               ("interrupt", "raise KeyboardInterrupt\n", "KeyboardInterrupt"))
]

BEFORE_WORK_CASES = [
    FileCase("confirm-huge-seeds", {}, ("confirm", "run", "--top", "1", "--seeds", "1000000000"), ("--seeds",)),
    FileCase("confirm-huge-top", {}, ("confirm", "run", "--top", "100000000", "--seeds", "1"), ("--top",)),
    FileCase("resume-huge-extra", {}, ("resume", "run", "--extra-trials", "2000000", "--no-report"),
             ("--extra-trials",)),
    FileCase("resume-corrupt-policy", {"run/policy_state.json": "{not json"}, RESUME,
             ("policy_state.json", "not valid JSON")),
    FileCase("storage-is-file", {"afile": "x"}, ("search", "good.yaml", "--storage", "afile", "--no-report"),
             ("afile", "--storage", "not a folder")),
    FileCase("storage-under-proc", {}, ("search", "good.yaml", "--storage", "/proc/dynas", "--no-report"),
             ("/proc", "--storage")),
]
OUT_CASES = [
    FileCase("report-out-is-file", {"afile": "x"}, ("report", "run", "--out", "afile"), ("afile", "cannot write")),
    FileCase("report-out-under-proc", {}, ("report", "run", "--out", "/proc/dynas-report"),
             ("/proc/dynas-report", "cannot write")),
    FileCase("export-out-under-file", {"afile": "x"}, ("export", "run", "--out", "afile/arch.json"),
             ("afile/arch.json", "cannot write")),
]
CASES = YAML_CASES + BEFORE_WORK_CASES + OUT_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_before_work(case: FileCase, workdir: Path, capsys, monkeypatch):
    write_files(case.files, workdir)
    refused_in_process(case.argv, case.expect, workdir, capsys, monkeypatch)
    assert sorted(p.name for p in (workdir / "st").iterdir()) == ["taken"]      # no run directory


def write_files(files: dict, root: Path) -> None:
    for name, content in files.items():
        write(name, content)(root)


@pytest.mark.parametrize("case", PLUGIN_EXIT_CASES, ids=[c.id for c in PLUGIN_EXIT_CASES])
def test_a_plugin_cannot_end_dynas(case: FileCase, workdir: Path):
    assert_refused(case, workdir)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only folder")
def test_a_read_only_storage_is_refused_before_ray(workdir: Path, capsys, monkeypatch):
    (workdir / "ro").mkdir()
    (workdir / "ro").chmod(0o555)
    try:
        refused_in_process(("search", "good.yaml", "--storage", "ro", "--no-report"),
                           ("ro", "--storage", "cannot create"), workdir, capsys, monkeypatch)
    finally:
        (workdir / "ro").chmod(0o755)


def test_a_recorded_plugin_runs_with_consent(workdir: Path):
    """The same run resumes past the plugin with --trust-plugins, or with the plugin
    passed again (what a refusal says to do); the plugin then ran."""
    from tests.test_bad_input import run_cli

    recorded_plugin(workdir)
    for consent in (("--trust-plugins",), ("--plugin", str(workdir / "marker.py"))):
        proc = run_cli(("resume", "run", "--no-report", "--runner", "local", *consent), workdir)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (workdir / "pwned").read_text() == "ran"
        (workdir / "pwned").unlink()


def test_the_keeper_deletes_nothing_outside_the_run(tmp_path: Path):
    """Records naming weights by absolute path, ``../`` or a symlink out, the run
    directory itself or one of its top folders: nothing is deleted, nothing indexed."""
    from dynas.controllers.kept_weights import WeightKeeper
    from dynas.controllers.records import TrialRecord
    from dynas.search_space.settings import Objective

    run, outside = tmp_path / "run", tmp_path / "precious"
    for folder in (run / "weights" / "mine", run / "weights" / "gone", outside):
        folder.mkdir(parents=True)
        (folder / "weights.safetensors").write_text("w")
    os.symlink(outside, run / "link")
    (run / "weights" / "mine" / "weights.safetensors").unlink()     # not a model folder: not deleted
    (run / "weights" / "mine" / "notes.txt").write_text("mine")
    paths = [str(outside), "../precious", "link", ".", "weights", "weights/gone", "weights/mine"]
    records = [TrialRecord(i, f"a{i}", {}, {}, "complete", objectives=[float(i)], weights={"path": p, "bytes": 1})
               for i, p in enumerate(paths)]
    keeper = WeightKeeper(run, "none", (Objective("final_avg_accuracy", "max"),))
    assert keeper.update(records) == {}                            # none kept: each one a leaver
    assert (outside / "weights.safetensors").is_file() and (run / "link").is_symlink()
    assert (run / "weights" / "mine" / "notes.txt").is_file()
    assert not (run / "weights" / "gone").exists()


def test_records_that_name_paths_outside_or_come_from_a_newer_dynas_are_skipped(tmp_path: Path, capsys):
    from dynas.controllers.records import RECORDS_FILE, iter_records

    good = {"proposal_id": 0, "arch_id": "a", "arch": {}, "params": {}, "state": "complete"}
    lines = [dict(good, weights={"path": "/etc", "bytes": 1}), dict(good, weights={"path": "../x", "bytes": 1}),
             dict(good, schema_version=99), dict(good, arch={"layers": [1]}),
             dict(good, arch={"layers": [{"attention": "full"}]}), good]
    (tmp_path / RECORDS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert len(list(iter_records(tmp_path))) == 1
    err = capsys.readouterr().err
    assert err.count("skipped") == 5 and "newer dynas" in err and "inside the run directory" in err


def test_a_copied_run_is_refused_not_read_outside(workdir: Path):
    """The whole run directory copied elsewhere still resolves inside itself."""
    shutil.copytree(workdir / "run", workdir / "copy", symlinks=True)
    from dynas.controllers.records import read_run

    assert read_run(workdir / "copy")["experiment"] == "experiment.yaml"

