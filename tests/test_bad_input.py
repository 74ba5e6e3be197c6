"""Bad input never crashes dynas and never costs the user a file.

Every case runs the real command line (``python -m analysis.cli ...``) in a fresh
process and must: exit with code 2, print exactly one line on stderr that names the
file (or argument) and the key at fault, print no traceback, and leave every file in
its working folder byte-identical (no new file either: a refused command writes
nothing). Cases are a table: (what is broken, the command, the fragments the one
line must contain).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.controllers.records import RUN_FILE, TrialRecord, append_record, write_json_atomic
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
space:
  layers: [1]
  d_model: [16]
  layer:
    attention: [{kind: full, heads: [2]}]
    ffn:
      - {kind: dense, expansion: [2, 4]}
      - {kind: moe, experts: [2], top_k: [1], expansion: 2}
task:
  name: split_digits
training:
  steps_per_experience: 5
  batch_size: 16
  device: cpu
search:
  strategy: random
  trials: 2
  concurrent: 1
"""
SUPERNET = GOOD.replace("concurrent: 1", "concurrent: 1\n  evaluation: supernet")
# a plugin attention kind that never declared it slices (KindSpec.slices defaults to False)
OPAQUE_KIND = """\
import dataclasses
from dynas.search_space.kinds import ATTENTION
from dynas.search_space.kinds.registries import register_attention
from dynas.trainers.modules.attention import FullAttention
from dynas.trainers.modules.registry import builder

register_attention(dataclasses.replace(ATTENTION.get("full"), name="opaque", slices=False))


@builder("attention", "opaque")
def build(cfg, d_model, causal):
    return FullAttention(d_model, cfg.heads, causal=causal)
"""
ARCH = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2)),))
GOOD_ARCH = json.dumps(ARCH.to_dict())


def variant(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def arch_variant(**changes) -> str:
    data = ARCH.to_dict()
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = data
        for part in path:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    return json.dumps(data)


@dataclass(frozen=True)
class Case:
    id: str
    files: dict          # name -> text or bytes, written before the command
    argv: tuple          # after `python -m analysis.cli`
    expect: tuple        # fragments of the one stderr line


def validate(name: str, text: str | bytes, *expect: str) -> Case:
    return Case(name, {f"{name}.yaml": text}, ("space", "validate", f"{name}.yaml"), (f"{name}.yaml",) + expect)


def train(name: str, text: str | bytes, *expect: str) -> Case:
    return Case(f"arch-{name}", {f"{name}.json": text},
                ("train", "--arch", f"{name}.json", "--config", "good.yaml", "--out", "out"),
                (f"{name}.json",) + expect)


EXPERIMENT_CASES = [
    validate("syntax", "space:\n  layers: [1, 2\n  d_model: 16\n", "invalid YAML at line 3"),
    validate("tabs", "space:\n\tlayers: [1]\n", "invalid YAML at line 2"),
    validate("empty", "", "empty experiment file"),
    validate("toplist", "- 1\n- 2\n", "expected a mapping of sections"),
    validate("binary", b"\xff\xfe\x00space", "cannot read"),
    validate("pyobject", GOOD + "extra: !!python/object/apply:os.system ['touch pwned']\n",
             "could not determine a constructor"),
    validate("wrongtype", variant("steps_per_experience: 5", "steps_per_experience: five"),
             "training.steps_per_experience", "expected an integer"),
    validate("wrongtype_list", variant("layers: [1]", "layers: {a: 1}"), "space.layers"),
    validate("badbool", variant("device: cpu", "device: cpu\n  joint: maybe"), "training.joint"),
    validate("unknown_attention", variant("kind: full", "kind: fancy"),
             "space.layer.attention[0].kind", "unknown attention kind 'fancy'"),
    validate("unknown_ffn", variant("kind: dense", "kind: sparse"), "space.layer.ffn[0].kind", "unknown ffn kind"),
    validate("unknown_router", variant("top_k: [1],", "top_k: [1], router: [magic],"),
             "space.layer.ffn[1].router", "magic"),
    validate("relu_top_p", variant("top_k: [1],", "top_k: [1], router: [relu], top_p: [0.5, 0.9],"),
             "space.layer.ffn[1].top_p", "only used by router dynamic"),
    validate("negative_router_l1", variant("device: cpu", "device: cpu\n  loss_weights: {router_l1: -1}"),
             "training.loss_weights.router_l1"),
    validate("negative_span_hold", variant("device: cpu", "device: cpu\n  loss_weights: {span_hold: -5}"),
             "training.loss_weights.span_hold"),
    validate("fractional_span_hold", variant("device: cpu", "device: cpu\n  loss_weights: {span_hold: 2.5}"),
             "training.loss_weights.span_hold"),
    validate("unknown_key", variant("batch_size: 16", "batch_sise: 16"), "training.batch_sise", "unknown key"),
    validate("unknown_section", GOOD + "serach: {}\n", "serach", "unknown key"),
    validate("unknown_option_key", variant("heads: [2]", "heads: [2], window: [4]"),
             "space.layer.attention[0].window", "unknown key"),
    validate("topk_exceeds", variant("top_k: [1]", "top_k: [1, 3]"), "space.layer.ffn[1].top_k", "exceeds experts=2"),
    validate("heads_divide", variant("heads: [2]", "heads: [3]"), "space.layer.attention[0].heads", "does not divide"),
    validate("negative", variant("batch_size: 16", "batch_size: -1"),
             "training.batch_size", ">= 1"),
    validate("nan_budget", variant("concurrent: 1", "concurrent: 1\n  budget: {max_flops: .nan}"),
             "search.budget.max_flops"),
    validate("infeasible", variant("concurrent: 1", "concurrent: 1\n  budget: {max_flops: 1}"),
             "search.budget.max_flops", "nothing feasible"),
    validate("infeasible_params", variant("concurrent: 1", "concurrent: 1\n  budget: {max_params: 10}"),
             "search.budget.max_params", "nothing feasible"),
    validate("unknown_strategy", variant("strategy: random", "strategy: magic"), "search.strategy", "'magic'"),
    validate("unknown_objective_direction", variant("concurrent: 1", "concurrent: 1\n  objectives: "
             "[{metric: flops, direction: up}]"), "search.objectives[0].direction"),
    validate("unknown_task", variant("name: split_digits", "name: split_whatever"), "task.name", "unknown task"),
    validate("unknown_task_option", variant("name: split_digits", "name: split_digits\n  options: {colour: 3}"),
             "task.options.colour", "unknown option"),
    Case("missing_experiment", {}, ("space", "validate", "nope.yaml"), ("nope.yaml", "no such experiment file")),
    validate("fidelity_not_increasing", variant("concurrent: 1", "concurrent: 1\n  fidelity: {rungs: [1, 4, 2]}"),
             "search.fidelity.rungs", "must increase"),
    validate("fidelity_zero_budget", variant("concurrent: 1", "concurrent: 1\n  fidelity: {rungs: [0, 4]}"),
             "search.fidelity.rungs[0]", ">= 1"),
    validate("fidelity_too_many_rungs", variant("concurrent: 1", "concurrent: 1\n  fidelity: {rungs: [1, 4, 16]}"),
             "search.fidelity.rungs", "need at least 16 trials", "search.trials is 2"),
]

ARCH_CASES = [
    train("truncated", GOOD_ARCH[: len(GOOD_ARCH) // 2], "not valid JSON"),
    train("nonjson", "d_model = 16\n", "not valid JSON"),
    train("binary", b"\x80\x04\x95 pickled?", "not valid JSON"),
    train("empty", "", "not valid JSON"),
    train("deep", "[" * 100_000, "nested too deeply"),
    train("hugeint", '{"d_model": ' + "1" * 5000 + ', "layers": []}', "not valid JSON"),
    train("toplist", "[1, 2]", "expected a mapping"),
    train("wrongtype", arch_variant(d_model="16"), "d_model", "expected an integer"),
    train("unknownkey", arch_variant(colour=1), "colour", "unknown key"),
    train("unknownkind", arch_variant(layers__0__attention__kind="fancy"), "layers[0].attention.kind"),
    train("heads", arch_variant(layers__0__attention__heads=3), "layers[0].attention.heads", "does not divide"),
    train("zeroheads", arch_variant(layers__0__attention__heads=0), "layers[0].attention.heads"),
    train("nolayers", arch_variant(layers=[]), "layers", "at least one layer"),
    train("moe_norouter", arch_variant(layers__0__ffn__kind="moe", layers__0__ffn__experts=2),
          "layers[0].ffn.router", "needs a router"),
    train("version", arch_variant(schema_version=99), "schema_version", "unsupported version 99"),
    train("missingkey", json.dumps({"layers": ARCH.to_dict()["layers"]}), "d_model", "missing required key"),
    Case("arch-missing", {}, ("train", "--arch", "nope.json", "--config", "good.yaml", "--out", "out"),
         ("nope.json", "no such architecture file")),
]

RUN_CASES = [
    Case(f"{cmd}-{broken}", {}, argv, (path, fragment))
    for cmd, extra in (("report", ()), ("export", ("--out", "new.json")), ("resume", ("--no-report",)))
    for broken, path, fragment in (("missing", "nodir", "no such run directory"),
                                   ("foreign", "foreign", "not a dynas run directory"),
                                   ("corrupt", "broken/run.json", "not valid JSON"))
    for argv in [(cmd, path.split("/")[0]) + extra]
]

NO_OVERWRITE_CASES = [
    Case("export-existing-file", {}, ("export", "run", "--out", "taken.json"), ("taken.json", "--force")),
    Case("export-existing-sidecar", {}, ("export", "run", "--out", "sub/arch.json"), ("pareto.json", "--force")),
    Case("export-unknown-pick", {}, ("export", "run", "--pick", "prettiest", "--out", "x.json"),
         ("run", "unknown pick rule 'prettiest'")),
    Case("export-nothing-to-pick", {}, ("export", "failed", "--out", "x.json"), ("failed", "nothing to pick")),
    Case("train-existing-results", {"arch.json": GOOD_ARCH},
         ("train", "--arch", "arch.json", "--config", "good.yaml", "--out", "trained"),
         ("trained", "already holds results", "--force")),
    Case("train-bad-steps", {"arch.json": GOOD_ARCH},
         ("train", "--arch", "arch.json", "--config", "good.yaml", "--steps", "0", "--out", "o"), ("--steps", ">= 1")),
]

SEARCH_CASES = [
    Case("search-unknown-strategy", {}, ("search", "good.yaml", "--strategy", "magic"), ("--strategy", "magic")),
    Case("search-bad-trials", {}, ("search", "good.yaml", "--trials", "x"), ("--trials", "'x'")),
    Case("search-zero-trials", {}, ("search", "good.yaml", "--trials", "0", "--storage", "st"), ("trials", ">= 1")),
    Case("search-missing-config", {}, ("search", "nope.yaml", "--storage", "st"), ("nope.yaml", "no such experiment")),
    Case("search-bad-config", {"bad.yaml": variant("kind: full", "kind: fancy")},
         ("search", "bad.yaml", "--storage", "st"), ("bad.yaml", "space.layer.attention[0].kind")),
    Case("search-existing-name", {}, ("search", "good.yaml", "--storage", "st", "--name", "taken", "--no-report"),
         ("taken", "not empty", "resume")),
    Case("search-infeasible", {"inf.yaml": variant("concurrent: 1", "concurrent: 1\n  budget: {max_flops: 1}")},
         ("search", "inf.yaml", "--storage", "st", "--no-report"), ("inf.yaml", "search.budget.max_flops")),
    Case("search-bad-address", {}, ("search", "good.yaml", "--storage", "st", "--address", "127.0.0.1:1",
                                    "--no-report"), ("127.0.0.1:1", "cannot connect")),
    Case("search-address-no-port", {}, ("search", "good.yaml", "--storage", "st", "--address", "127.0.0.1",
                                        "--no-report"), ("127.0.0.1", "HOST:PORT")),
    Case("search-address-bad-port", {}, ("search", "good.yaml", "--storage", "st", "--address", "127.0.0.1:99999",
                                         "--no-report"), ("127.0.0.1:99999", "port must be 1-65535")),
    Case("search-supernet-tuned-lr", {"sn.yaml": SUPERNET.replace("batch_size: 16", "batch_size: 16\n  lr: [0.001, 0.003]")},
         ("search", "sn.yaml", "--storage", "st", "--no-report"), ("sn.yaml", "training.lr", "supernet")),
    Case("search-fidelity-asha", {"f.yaml": GOOD.replace("concurrent: 1", "concurrent: 1\n  scheduler: asha\n"
                                                        "  fidelity: {rungs: [1, 2], keep: 0.5}")},
         ("search", "f.yaml", "--storage", "st", "--no-report"), ("f.yaml", "search.scheduler", "rungs are the schedule")),
    Case("search-fidelity-trials-flag", {"f.yaml": GOOD.replace("concurrent: 1", "concurrent: 1\n"
                                                               "  fidelity: {rungs: [1, 2], keep: 0.5}")},
         ("search", "f.yaml", "--trials", "1", "--storage", "st", "--no-report"),
         ("f.yaml", "search.fidelity.rungs", "need at least 2 trials")),
    Case("search-supernet-asha", {"sn.yaml": SUPERNET.replace("concurrent: 1", "concurrent: 1\n  scheduler: asha")},
         ("search", "sn.yaml", "--storage", "st", "--no-report"), ("sn.yaml", "search.scheduler", "supernet")),
    Case("search-supernet-bad-sampling", {"sn.yaml": SUPERNET.replace("evaluation: supernet", "evaluation: supernet\n"
                                                                      "  supernet: {sampling: random}")},
         ("search", "sn.yaml", "--storage", "st", "--no-report"), ("sn.yaml", "search.supernet.sampling", "sandwich")),
    Case("search-supernet-no-sandwich-paths", {"sn.yaml": SUPERNET.replace(
        "evaluation: supernet", "evaluation: supernet\n  supernet: {sampling: sandwich, sandwich_paths: -1}")},
         ("search", "sn.yaml", "--storage", "st", "--no-report"), ("sn.yaml", "search.supernet.sandwich_paths", ">= 0")),
    Case("search-supernet-one-shot-to-split", {"sn.yaml": SUPERNET.replace("evaluation: supernet", "evaluation: supernet\n"
                                                                           "  supernet: {shots: d_model}")},
         ("search", "sn.yaml", "--storage", "st", "--no-report"), ("sn.yaml", "search.supernet.shots", "nothing to split")),
    Case("search-supernet-unsliced-kind", {"opaque.py": OPAQUE_KIND,
                                           "sn.yaml": "plugins: [opaque.py]\n" + SUPERNET.replace(
                                               "attention: [{kind: full, heads: [2]}]",
                                               "attention: [{kind: full, heads: [2]}, {kind: opaque, heads: [2]}]")},
         ("search", "sn.yaml", "--storage", "st", "--no-report"),
         ("sn.yaml", "space.layer.attention[1].kind", "opaque", "slices")),
    Case("resume-bad-address", {}, ("resume", "run", "--extra-trials", "1", "--address", "127.0.0.1:1",
                                    "--no-report"), ("127.0.0.1:1", "cannot connect")),
    Case("resume-negative-extra", {}, ("resume", "run", "--extra-trials", "-1", "--no-report"),
         ("--extra-trials", ">= 0")),
]


def _records(states: tuple[str, ...]) -> list[TrialRecord]:
    out = []
    for i, state in enumerate(states):
        arch = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2 + 2 * i)),))
        metrics = {names.FINAL_AVG_ACCURACY: 0.5 + 0.1 * i, names.FLOPS: 1e5 * (1 + i)} if state == "complete" else {}
        out.append(TrialRecord(i, arch.arch_id, arch.to_dict(), {}, state, objectives=list(metrics.values()) or None, policy="random", reason=None if state == "complete" else "RuntimeError: boom",
                               measured=TrialMetrics(values=metrics)))
    return out


def _run_dir(path: Path, states: tuple[str, ...]) -> None:
    path.mkdir()
    (path / "experiment.yaml").write_text(GOOD)
    write_json_atomic(path / RUN_FILE, {
        "name": path.name, "runner": "ray", "strategy": "random", "trials": len(states), "concurrent": 1,
        "seed": 0, "experiment": "experiment.yaml", "objectives": [
            {"metric": names.FINAL_AVG_ACCURACY, "direction": "max"}, {"metric": names.FLOPS, "direction": "min"}]})
    for record in _records(states):
        append_record(path, record)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """good.yaml, a finished run, a run with only failures, a foreign folder, a run
    with a corrupt run.json, an existing export and an existing training result."""
    (tmp_path / "good.yaml").write_text(GOOD)
    _run_dir(tmp_path / "run", ("complete", "complete"))
    _run_dir(tmp_path / "failed", ("failed",))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not a run\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / RUN_FILE).write_text('{"name": "broken", ')
    (tmp_path / "taken.json").write_text("precious\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pareto.json").write_text("precious too\n")
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "metrics.json").write_text('{"precious": true}\n')
    (tmp_path / "st" / "taken").mkdir(parents=True)
    (tmp_path / "st" / "taken" / RUN_FILE).write_text('{"precious": true}\n')
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(argv: tuple, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "dynas.analysis.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


ALL = EXPERIMENT_CASES + ARCH_CASES + RUN_CASES + NO_OVERWRITE_CASES + SEARCH_CASES


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case: Case, workdir: Path):
    assert_refused(case, workdir)


def assert_refused(case: Case, workdir: Path) -> None:
    """Write the case's files, run it: exit 2, one line with every fragment, no
    traceback, every file byte-identical afterwards."""
    for name, content in case.files.items():
        target = workdir / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    before = snapshot(workdir)
    proc = run_cli(case.argv, workdir)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(err.splitlines()) == 1, err
    for fragment in case.expect:
        assert fragment in err, (fragment, err)
    assert snapshot(workdir) == before, "a refused command changed or wrote files"
    assert not (workdir / "pwned").exists()


def test_table_covers_every_subcommand():
    used = {c.argv[0] if c.argv[0] != "space" else "space " + c.argv[1] for c in ALL}
    assert {"space validate", "train", "report", "export", "search", "resume"} <= used
