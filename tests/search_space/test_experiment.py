"""Experiment files: the shipped examples load; every bad file fails with one line."""
from pathlib import Path

import pytest
import yaml

from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.experiment import Experiment, load_experiment
from dynas.search_space.plain import DecisionSpace
from dynas.search_space.settings import SearchSettings, TaskSettings, TrainingSettings
from dynas.search_space.space import ArchSpace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quickstart_loads_with_every_section():
    exp = load_experiment(EXAMPLES / "quickstart.yaml")
    assert isinstance(exp, Experiment) and isinstance(exp.space, ArchSpace)
    assert exp.task == TaskSettings(name="split_digits")
    assert isinstance(exp.training, TrainingSettings) and exp.training.steps_per_experience == 120
    # the recipe chosen by the calibration pilot (docs/concepts/calibration.md)
    t = exp.training
    assert (t.lr, t.lr_schedule, t.warmup, t.min_lr, t.grad_clip) == (0.003, "constant", 0.1, 0.0, 1.0)
    assert isinstance(exp.search, SearchSettings)
    assert (exp.search.strategy, exp.search.trials, exp.search.concurrent) == ("random", 6, 2)
    assert exp.source == EXAMPLES / "quickstart.yaml"
    assert exp.raw == yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    # the space the quickstart promises: heterogeneous MoE / attention, small
    assert {o.kind for o in exp.space.attention} == {"full", "sliding_window", "dynamic_span"}
    assert exp.space.layers == (1, 2) and exp.space.d_model == (32, 64)


def test_plain_example_loads_as_a_decision_space():
    exp = load_experiment(EXAMPLES / "plain_space.yaml")
    assert isinstance(exp.space, DecisionSpace)
    assert exp.search.strategy == "tpe" and exp.space.size() == 3 * 8 * 4 * 3 * 2


def test_only_space_is_required(tmp_path):
    path = tmp_path / "min.yaml"
    path.write_text("space: {decisions: {a: [1, 2]}}\n")
    exp = load_experiment(path)
    assert exp.task == TaskSettings() and exp.search == SearchSettings()


def test_training_one_architecture_needs_no_space(tmp_path):
    """``dynas train`` loads with need_space=False: task and training settings only."""
    path = tmp_path / "train.yaml"
    path.write_text("training: {steps_per_experience: 7, log_every: 5}\n")
    exp = load_experiment(path, need_space=False)
    assert exp.space is None and exp.training.steps_per_experience == 7 and exp.training.log_every == 5
    path.write_text("")
    assert load_experiment(path, need_space=False).training == TrainingSettings()
    path.write_text("task: {}\n")
    with pytest.raises(ConfigError, match="space: missing required section"):
        load_experiment(path)                      # a search still needs its space
    path.write_text("training: {log_every: 0}\n")
    with pytest.raises(ConfigError, match="training.log_every: must be >= 1"):
        load_experiment(path, need_space=False)


BAD_FILES = [
    ("", "empty experiment file; it needs at least a 'space' section"),
    ("# only a comment\n", "empty experiment file; it needs at least a 'space' section"),
    ("- 1\n- 2\n", "expected a mapping of sections (space, task, training, search, evaluator, plugins), got [1, 2]"),
    ("just text\n", "expected a mapping of sections (space, task, training, search, evaluator, plugins), got 'just text'"),
    ("task: {name: split_digits}\n", "space: missing required section (the search space)"),
    ("space: {decisions: {a: [1]}}\nspaces: {}\n",
     "spaces: unknown key; known keys: space, task, training, search, evaluator, plugins"),
    ("space: {decisions: {a: [1, 2]}}\ntraining: {lr: -1}\n", "training.lr: must be > 0, got -1.0"),
    ("space: {decisions: {a: [1, 2]}}\ntraining: {steps: 5}\n",
     "training.steps: unknown key; known keys: steps_per_experience, batch_size, lr, weight_decay, "
     "seed, eval_batch_size, device, curriculum, replay, loss_weights, joint, log_every, dropout, "
     "lr_schedule, warmup, min_lr, grad_clip, precision"),
    ("space: {decisions: {a: [1, 2]}}\ntask: {name: 3}\n", "task.name: expected a string, got 3"),
    ("space: {decisions: {a: [1, 2]}}\nsearch: {strategy: 3}\n", "search.strategy: expected a string, got 3"),
    ("space: {decisions: {a: [1, 2]}}\nsearch: {ppo: 3}\n", "search.ppo: unknown key; known keys: strategy, trials, concurrent, seed, objectives, "
     "scheduler, budget, cpus_per_trial, gpus_per_trial, max_failures, storage, loggers, baselines, keep_weights, remeasure, confirm, evaluation, supernet, fidelity, "
     "or a settings section (a mapping)"),
    ("space: {decisions: {a: [1, 2]}}\nsearch: {budget: {max_flops: -1}}\n",
     "search.budget.max_flops: must be >= 0 (0 = unlimited), got -1.0"),
    ("space: {decisions: {a: [1, 2]}}\nsearch: {budget: {max_params: .nan}}\n",
     "search.budget.max_params: expected a finite number, got nan"),
    ("space: {decisions: {a: [1, 2]}}\ntraining: {lr: .inf}\n",
     "training.lr: expected a finite number, got inf"),
    ("space: {decisions: {a: [1, 2]}}\nsearch: {budget: {max_flops: 1000}}\n",
     "search.budget: FLOPs/params budgets need an architecture space, not a plain decisions space"),
    ("space: {layers: [1], d_model: [8], layer: {attention: {kind: full, heads: 3}, ffn: {kind: dense}}}\n",
     "space.layer.attention.heads: 3 does not divide d_model=8"),
]


@pytest.mark.parametrize("text, message", BAD_FILES, ids=[m[:40] for _, m in BAD_FILES])
def test_bad_file_gives_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value) == f"{path}: {message}"


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("space:\n  layers: [1, 2\n  d_model: 32\ntask: {name: x}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: invalid YAML at line 3, column ")
    assert "\n" not in msg


def test_yaml_tabs_error_names_the_line(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("space:\n\tlayers: [1]\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line 2, column 1: "):
        load_experiment(path)


def test_loading_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'space: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match=r"invalid YAML at line 1, column 8: could not determine a constructor"):
        load_experiment(path)
    assert not marker.exists()


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(DynasError) as info:
        load_experiment(path)
    assert str(info.value) == f"{path}: no such experiment file"


def test_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00space")
    with pytest.raises(ConfigError, match=r"bin\.yaml: cannot read \(UnicodeDecodeError\)"):
        load_experiment(path)


def test_alias_bomb_is_rejected_quickly_with_a_short_message(tmp_path):
    # nine levels of nine aliases: 9**9 leaves if anything expanded it
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    lines.append("space: {layers: *a8, d_model: [8], layer: {attention: {kind: full, heads: 1}, ffn: {kind: dense}}}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value).startswith(f"{path}: invalid YAML at line 1") and "alias bomb" in str(info.value)
    path.write_text("\n".join(lines[:-1]) + "\nspace: {decisions: {a: *a8}}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert len(str(info.value)) < 200


def test_search_loggers_are_checked_by_name(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("space: {decisions: {a: [1, 2]}}\nsearch: {loggers: [mlflow]}\n")
    assert load_experiment(path).search.loggers == ("mlflow",)
    path.write_text("space: {decisions: {a: [1, 2]}}\nsearch: {loggers: [mlflow, wandb]}\n")
    with pytest.raises(ConfigError, match=r"search.loggers\[1\]: 'wandb' is not one of mlflow"):
        load_experiment(path)
