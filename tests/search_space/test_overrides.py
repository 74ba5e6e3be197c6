"""Settings by dotted key path: an override is checked exactly as the same value in the
file, a bad one is the file's one-line error, and the original is never changed."""
import copy
from pathlib import Path

import pytest
import yaml

from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import load_experiment, override_experiment
from dynas.search_space.overrides import apply_overrides, key_path, parse_assignment

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def test_key_paths_are_the_ones_errors_print():
    assert key_path("training.lr") == ["training", "lr"]
    assert key_path("space.layer.ffn[1].top_k") == ["space", "layer", "ffn", 1, "top_k"]
    assert key_path("a[0][2]") == ["a", 0, 2]
    for bad in ("", "a..b", ".a", "a.", "a[x]", "a[-1]", "[0]", "a[0"):
        with pytest.raises(ConfigError):
            key_path(bad)


def test_apply_sets_values_creates_mappings_and_leaves_the_original_alone():
    data = {"training": {"lr": 0.1}, "space": {"layer": {"ffn": [{"kind": "dense"}, {"kind": "moe"}]}}}
    before = copy.deepcopy(data)
    out = apply_overrides(data, {"training.lr": 0.01, "space.layer.ffn[1].experts": [2, 4],
                                 "task.options.patch": 4, "training.replay": {"budget": 10}})
    assert data == before
    assert out["training"] == {"lr": 0.01, "replay": {"budget": 10}}
    assert out["space"]["layer"]["ffn"] == [{"kind": "dense"}, {"kind": "moe", "experts": [2, 4]}]
    assert out["task"] == {"options": {"patch": 4}}
    assert apply_overrides(None, {"a.b": 1}) == {"a": {"b": 1}}
    assert apply_overrides(data, {"training": {"lr": 1}})["training"] == {"lr": 1}   # a whole section


@pytest.mark.parametrize("settings, message", [
    ({"space.layer.ffn[2].kind": "dense"}, "space.layer.ffn[2].kind: [2]: the list has 2 item(s)"),
    ({"training.lr.x": 1}, "training.lr.x: 'lr' is 0.1, not a mapping or a list"),
    ({"space.layer[0]": 1}, "space.layer[0]: [0]: not a list"),
    ({"space.layer.ffn.kind": "x"}, "space.layer.ffn.kind: cannot set key 'kind' in a list"),
    ({"task.steps[0]": 1}, "task.steps[0]: 'steps' is not set: there is no list to index"),
])
def test_a_path_that_leads_nowhere_is_one_line(settings, message):
    data = {"training": {"lr": 0.1}, "space": {"layer": {"ffn": [{"kind": "dense"}, {"kind": "moe"}]}}}
    with pytest.raises(ConfigError) as err:
        apply_overrides(data, settings)
    assert str(err.value).startswith(f"settings: {message}") and "\n" not in str(err.value)


def test_an_overridden_experiment_is_parsed_again():
    exp = load_experiment(QUICKSTART)
    new = override_experiment(exp, {"training.steps_per_experience": 5, "search.trials": 2,
                                    "task.options": {"patch": 4}, "space.d_model": [32]})
    assert (new.training.steps_per_experience, new.search.trials, new.space.d_model) == (5, 2, (32,))
    assert new.task.options == {"patch": 4} and new.source == exp.source
    assert new.raw["training"]["steps_per_experience"] == 5 and new.raw["training"]["lr"] == 0.003
    assert exp.training.steps_per_experience == 120 and exp.raw["training"]["steps_per_experience"] == 120
    assert override_experiment(exp, {}) is exp and override_experiment(exp, None) is exp


@pytest.mark.parametrize("key, value", [
    ("training.steps_per_experienc", 5),                   # a typo: unknown key
    ("training.steps_per_experience", 0),                  # out of range
    ("training.lr", "fast"),                               # wrong type
    ("space.layer.ffn[1].top_k", [8]),                     # a cross-field check (experts: [4])
    ("search.objectives", [{"metric": "test.final_avg_accuracy", "direction": "max"}]),
])
def test_a_bad_setting_is_the_files_own_error(tmp_path, key, value):
    """The same one line as a file that holds the value: both name the file and the key."""
    with pytest.raises(ConfigError) as from_settings:
        override_experiment(load_experiment(QUICKSTART), {key: value})
    written = tmp_path / "quickstart.yaml"
    written.write_text(yaml.safe_dump(apply_overrides(yaml.safe_load(QUICKSTART.read_text()), {key: value})))
    with pytest.raises(ConfigError) as from_file:
        load_experiment(written)
    assert from_settings.value.key == from_file.value.key
    assert str(from_settings.value) == str(from_file.value).replace(str(written), str(QUICKSTART))
    assert str(from_settings.value).startswith(f"{QUICKSTART}: ") and "\n" not in str(from_settings.value)


def test_parse_assignment_reads_values_by_yaml_scalar_rules():
    assert parse_assignment("training.lr=0.01") == ("training.lr", 0.01)
    assert parse_assignment("search.trials=4") == ("search.trials", 4)
    assert parse_assignment("training.joint=true") == ("training.joint", True)
    assert parse_assignment("space.d_model=[32, 64]") == ("space.d_model", [32, 64])
    assert parse_assignment("task.name=split_digits") == ("task.name", "split_digits")
    assert parse_assignment(" task.options = {patch: 4}") == ("task.options", {"patch": 4})
    assert parse_assignment("search.storage=") == ("search.storage", None)
    assert parse_assignment("a.b=x=y") == ("a.b", "x=y")                # the first '=' splits
    for bad in ("training.lr", "=3", "a..b=1", "a=[1, 2"):
        with pytest.raises(ConfigError) as err:
            parse_assignment(bad)
        assert "\n" not in str(err.value)
