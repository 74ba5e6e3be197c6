"""Plugins: the user's modules, named by ``plugins:`` or ``--plugin``, as first-class
as the built-ins (tasks, kinds with builders, strategies, metrics, evaluators), and a
broken plugin is one line naming it, exit 2, before anything runs.

Every test runs inside ``registries``: the registries, the loaded-plugin table and the
plugin modules are put back afterwards, so a plugin kind never leaks into the kind
contract suites.
"""
from __future__ import annotations

import contextlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from dynas.analysis.cli import main
from dynas.search_space import evaluators, plugins
from dynas.search_space.experiment import load_experiment

from tests.test_registries import every_registry      # imports every module: the built-ins are in

REPO = Path(__file__).resolve().parents[1]

# One plugin that registers one of everything. The kind reuses full attention's
# fields, cost and module: what is tested is the wiring, not a new layer.
EVERYTHING = '''
import torch
from dynas.search_space.arch import AttentionConfig, TaskShape
from dynas.search_space.evaluators import register_evaluator
from dynas.search_space.kinds import ATTENTION, KindSpec, register_attention
from dynas.trainers.metrics import register_metric
from dynas.trainers.modules.registry import BUILDERS, builder
from dynas.trainers.tasks import Task, register_task
from dynas.trainers.tasks.images import class_incremental
from dynas.controllers.policies import POLICIES, register_policy

full = ATTENTION.get("full")
register_attention(KindSpec("twin_full", lambda v: AttentionConfig("twin_full", **v), cost=full.cost,
                            label=lambda a: f"twin_full(h={a.heads})", short=lambda a: "twin",
                            fields=full.fields))
builder("attention", "twin_full")(BUILDERS["attention"].get("full"))

def parity_shape(**options):
    return TaskShape(seq_len=4, num_classes=2, input_dim=1)

@register_task("parity", shape=parity_shape, description="sign of the sum of 4 numbers")
def parity(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 4, 1, generator=g)
    y = (x.sum(dim=(1, 2)) > 0).long()
    splits = {"train": (x[:64], y[:64]), "val": (x[64:80], y[64:80]), "test": (x[80:], y[80:])}
    return Task("parity", parity_shape(), class_incremental(splits, [(0, 1)]))

@register_metric("diagonal_min", description="worst R[j][j]")
def diagonal_min(acc_matrix, values):
    return min(acc_matrix[j][j] for j in range(len(acc_matrix)))

@register_evaluator("square", metrics=("loss",))
def square(decisions):
    return {"loss": float(decisions["a"] ** 2)}

register_policy("first_random", POLICIES.get("random").factory)
'''

TINY_SPACE = {"layers": [1], "d_model": [8], "layer": {
    "attention": [{"kind": "twin_full", "heads": [2]}, {"kind": "full", "heads": [2]}],
    "ffn": {"kind": "dense", "expansion": 2}}}


@pytest.fixture(autouse=True)
def registries():
    """Put every registry, the plugin table and the plugin modules back afterwards."""
    loaded, modules, path = dict(plugins._LOADED), set(sys.modules), list(sys.path)
    with contextlib.ExitStack() as stack:
        for registry in every_registry():
            stack.enter_context(registry.kept())
        yield
    sys.path[:] = path
    for plugin in set(plugins._LOADED) - set(loaded):
        for name in set(plugins._LOADED[plugin].modules) - modules:
            sys.modules.pop(name, None)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def one_evaluator(name: str) -> str:
    return ("from dynas.search_space.evaluators import register_evaluator\n"
            f"register_evaluator({name!r})(lambda decisions: {{'loss': 1.0}})\n")


# --- the four ways to name a plugin ------------------------------------------------------
def by_module(tmp, monkeypatch):
    write(tmp / "lib" / "plug_mod.py", one_evaluator("by_module"))
    monkeypatch.syspath_prepend(str(tmp / "lib"))
    return "plug_mod", ("plug_mod",), (str(tmp / "lib" / "plug_mod.py"),)


def by_file(tmp, monkeypatch):
    path = write(tmp / "plug_file.py", one_evaluator("by_file"))
    return str(path), ("plug_file",), (str(path),)


def by_package(tmp, monkeypatch):
    write(tmp / "plug_pkg" / "__init__.py", "from . import inner\n")
    write(tmp / "plug_pkg" / "inner.py", one_evaluator("by_package"))
    return str(tmp / "plug_pkg"), ("plug_pkg",), (str(tmp / "plug_pkg"),)


def by_folder(tmp, monkeypatch):
    write(tmp / "plug_dir" / "plug_a.py", one_evaluator("by_folder_a"))
    write(tmp / "plug_dir" / "plug_b.py", one_evaluator("by_folder_b"))
    return (str(tmp / "plug_dir"), ("plug_a", "plug_b"),
            (str(tmp / "plug_dir" / "plug_a.py"), str(tmp / "plug_dir" / "plug_b.py")))


@pytest.mark.parametrize("form", [by_module, by_file, by_package, by_folder], ids=lambda f: f.__name__)
def test_each_form_imports_once_and_says_what_a_worker_needs(form, tmp_path, monkeypatch):
    spec, modules, ship = form(tmp_path, monkeypatch)
    before = set(evaluators.EVALUATORS)
    (plugin,) = plugins.load_plugins([spec])
    assert plugin.modules == modules and plugin.ship == ship
    assert set(evaluators.EVALUATORS) - before            # it registered its evaluator(s)
    assert plugins.load_plugins([spec]) == (plugin,)      # twice: imported once, no refusal
    plugins.import_plugin_modules(plugin.modules)         # what a Ray worker does: a no-op here


def test_relative_paths_are_relative_to_the_experiment_file(tmp_path):
    write(tmp_path / "exp" / "plug_rel.py", one_evaluator("rel"))
    write(tmp_path / "exp" / "e.yaml", """
        plugins: [plug_rel.py]
        space: {decisions: {a: [1, 2]}}
        evaluator: rel
        """)
    experiment = load_experiment(tmp_path / "exp" / "e.yaml")
    assert experiment.plugin_specs == [str(tmp_path / "exp" / "plug_rel.py")]
    assert "rel" in evaluators.EVALUATORS


# --- first-class: whatever a plugin registers works everywhere --------------------------
@pytest.mark.parametrize("what, expected", [
    ("tasks", "parity"), ("kinds", "twin_full"), ("strategies", "first_random"),
    ("metrics", "diagonal_min"), ("evaluators", "square")])
def test_dynas_list_shows_what_a_plugin_registered(what, expected, tmp_path, capsys):
    plugin = write(tmp_path / "everything.py", EVERYTHING)
    assert main(["list", what]) == 0
    assert expected not in capsys.readouterr().out
    assert main(["list", what, "--plugin", str(plugin)]) == 0
    assert expected in capsys.readouterr().out


@pytest.mark.slow
def test_a_plugin_task_kind_strategy_and_metric_drive_a_search_on_ray(tmp_path, capsys):
    """The plugin's task, kind (spec and builder), metric (the objective) and strategy
    (by --strategy) through `dynas search` on a private Ray instance: its workers have
    only what the driver shipped, and every trial trains with trainers.fit."""
    plugin = write(tmp_path / "everything.py", EVERYTHING)
    exp = tmp_path / "e.yaml"
    exp.write_text(json.dumps({
        "space": TINY_SPACE, "task": {"name": "parity"},
        "training": {"steps_per_experience": 3, "batch_size": 16, "device": "cpu"},
        "search": {"trials": 2, "concurrent": 1, "max_failures": 0,
                   "objectives": [{"metric": "diagonal_min", "direction": "max"}]}}))
    code = main(["search", str(exp), "--plugin", str(plugin), "--strategy", "first_random", "--storage",
                 str(tmp_path), "--name", "run", "--verbose", "0", "--no-report"])
    assert code == 0, capsys.readouterr().err[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    trained = [r for r in records if r["cached_from"] is None]
    assert [r["state"] for r in trained] == ["complete", "complete"], [r["reason"] for r in trained]
    assert {r["arch"]["layers"][0]["attention"]["kind"] for r in trained} == {"twin_full", "full"}
    assert all(r["policy"] == "random" and r["objectives"] == [r["metrics"]["diagonal_min"]] for r in trained)


def test_the_strategy_flag_accepts_a_strategy_from_the_files_plugins(tmp_path, capsys):
    write(tmp_path / "everything.py", EVERYTHING)
    write(tmp_path / "e.yaml", """
        plugins: [everything.py]
        space: {decisions: {a: [1, 2, 3]}}
        evaluator: square
        search: {trials: 2, objectives: [{metric: loss, direction: min}]}
        """)
    from dynas.controllers.run.prepare import prepare_search

    search = prepare_search(load_experiment(tmp_path / "e.yaml"), strategy="first_random")
    assert search.strategy == "first_random"


# --- a broken plugin: one line naming it, exit 2, nothing run ---------------------------
BROKEN = [
    ("syntax", "def f(:\n", "SyntaxError"),
    ("raises", "raise RuntimeError('no licence file')\n", "RuntimeError: no licence file"),
    ("missing_dep", "import not_a_module_anywhere\n", "No module named 'not_a_module_anywhere'"),
    ("dup_task", "from dynas.trainers.tasks import register_task\n"
                 "register_task('split_digits', shape=None)(lambda seed=0: None)\n",
     ": task 'split_digits' is already registered"),
    ("dup_strategy", "from dynas.controllers.policies import POLICIES, register_policy\n"
                     "register_policy('tpe', POLICIES.get('random').factory)\n", "strategy 'tpe' is already registered"),
    ("dup_kind", "from dynas.search_space.kinds import ATTENTION, register_attention\n"
                 "register_attention(ATTENTION.get('full'))\n", "attention kind 'full' is already registered"),
    ("dup_builder", "from dynas.trainers.modules.registry import builder\n"
                    "builder('ffn', 'dense')(print)\n", "ffn builder 'dense' is already registered"),
    ("dup_metric", "from dynas.trainers.metrics import register_metric\n"
                   "register_metric('flops')(print)\n", "metric 'flops' is already registered (built in)"),
    ("dup_evaluator", one_evaluator("twice") + one_evaluator("twice"), "evaluator 'twice' is already registered"),
]


@pytest.mark.parametrize("name, code, fragment", BROKEN, ids=[b[0] for b in BROKEN])
@pytest.mark.parametrize("where", ["flag", "file"])
def test_a_broken_plugin_is_one_line_and_exit_2_before_any_trial(name, code, fragment, where, tmp_path, capsys):
    plugin = write(tmp_path / f"bad_{name}.py", code)
    exp = write(tmp_path / "e.yaml", ("plugins: [bad_%s.py]\n" % name if where == "file" else "")
                + "space: {decisions: {a: [1, 2]}}\n")
    argv = ["search", str(exp), "--storage", str(tmp_path / "runs"), "--no-report"]
    code_ = main(argv + (["--plugin", str(plugin)] if where == "flag" else []))
    err = capsys.readouterr().err.strip().splitlines()
    assert code_ == 2 and len(err) == 1, err
    assert f"plugin {plugin if where == 'flag' else f'bad_{name}.py'}: " in err[0] and fragment in err[0]
    if where == "file":
        assert err[0].startswith(f"dynas: error: {exp}: ")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("spec, fragment", [
    ("no_such_plugin_module", "ModuleNotFoundError: No module named 'no_such_plugin_module'"),
    ("./nowhere.py", "no such file or folder"),
    ("json", None),                                   # a module that is installed: fine
])
def test_plugin_names_that_do_not_resolve(spec, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["list", "tasks", "--plugin", spec])
    err = capsys.readouterr().err
    if fragment is None:
        assert code == 0 and not err
        assert plugins.load_plugins([spec])[0].ship == ()      # installed: nothing to ship
    else:
        assert code == 2 and err.count("\n") == 1 and f"plugin {spec}: " in err and fragment in err


def test_a_file_named_like_a_taken_module_is_refused(tmp_path):
    write(tmp_path / "json.py", "x = 1\n")
    with pytest.raises(plugins.PluginError, match="module name 'json' is already taken"):
        plugins.load_plugins([str(tmp_path / "json.py")])


def test_the_plugin_flag_works_before_or_after_the_command(tmp_path, capsys):
    plugin = str(write(tmp_path / "everything.py", EVERYTHING))
    for argv in (["--plugin", plugin, "list", "tasks"], ["list", "--plugin", plugin, "tasks"],
                 ["list", "tasks", f"--plugin={plugin}"]):
        assert main(argv) == 0
        assert "parity" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("dynas ")


def test_a_plugin_error_survives_pickling():
    import pickle

    err = plugins.PluginError("x.py", "RuntimeError: boom", "e.yaml")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is plugins.PluginError and str(again) == str(err) == "e.yaml: plugin x.py: RuntimeError: boom"


def test_run_json_keeps_the_resolved_plugins_for_resume(tmp_path):
    from dynas.controllers.run.prepare import run_info

    plugin = write(tmp_path / "everything.py", EVERYTHING)
    exp = write(tmp_path / "e.yaml", """
        plugins: [everything.py]
        space: {decisions: {a: [1, 2]}}
        evaluator: square
        search: {objectives: [{metric: loss, direction: min}]}
        """)
    experiment = load_experiment(exp)
    info = run_info(experiment, experiment.search, "r", "ray")
    assert str(plugin) in info["plugins"] and info["evaluator"] == {"name": "square", "options": {}}
    # the run directory's copy: its relative path would point into the run directory
    copy = write(tmp_path / "run" / "experiment.yaml", exp.read_text())
    assert load_experiment(copy, plugins=info["plugins"]).plugin_specs == [str(plugin)]
    json.dumps(info)


# --- the example strategy keeps the contract every built-in keeps ------------------------
def _contract_checks():
    """The generic checks of the policy suite: those that take only a policy name, the
    objectives and a space (the built-ins' own tests take other fixtures)."""
    import inspect

    from tests.controllers import test_policies as suite

    out = []
    for name, fn in vars(suite).items():
        if name.startswith("test_") and callable(fn):
            args = set(inspect.signature(fn).parameters)
            if "policy_name" in args and args <= {"policy_name", "objectives", "space"}:
                out.append(fn)
    return suite, out


SUITE, CONTRACT = _contract_checks()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda f: f.__name__)
@pytest.mark.parametrize("objectives", list(SUITE.OBJECTIVES))
def test_the_example_strategy_keeps_the_policy_contract(check, objectives):
    plugins.load_plugins([str(REPO / "examples" / "plugins" / "local_search.py")])
    kwargs = {"policy_name": "local_search", "objectives": SUITE.OBJECTIVES[objectives]}
    params = set(__import__("inspect").signature(check).parameters)
    for space in (SUITE.SPACES if "space" in params else {"-": None}).values():
        check(**{k: v for k, v in {**kwargs, "space": space and space()}.items() if k in params})
