"""``dynas list``: every entry with a description, task options with their defaults,
and an unknown task option that names the known ones."""
from __future__ import annotations

import pytest

from dynas.analysis.cli import main
from dynas.controllers.policies import POLICIES
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import TaskSettings
from dynas.trainers.tasks import TASKS, task_shape


def listed(capsys, *argv):
    assert main(["list", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_strategies_and_metrics_have_descriptions(capsys):
    lines = listed(capsys, "strategies")
    assert [line.split()[0] for line in lines] == list(POLICIES.names())
    assert not any("(no description)" in line for line in lines)
    assert set(names.DESCRIPTIONS) == set(names.ALL_METRICS), "every built-in metric has its line"
    metrics = listed(capsys, "metrics")
    assert any(line.startswith(names.LATENCY_MS) and "median of repeats" in line for line in metrics)


def test_task_options_are_listed_with_their_defaults(capsys):
    lines = listed(capsys, "tasks", "--options")
    at = lines.index(next(line for line in lines if line.startswith("text_lm ")))
    assert lines[at + 1: at + 3] == ["    task.options.seq_len: 256", "    task.options.n_train: 0"]
    for name, spec in TASKS.items():
        assert spec.option_defaults(), f"task {name} declares its options"
    assert main(["list", "kinds", "--options"]) == 2
    assert "--options: lists task options" in capsys.readouterr().err


@pytest.mark.parametrize("task", sorted(TASKS.names()))
def test_an_unknown_task_option_names_the_known_ones(task):
    with pytest.raises(ConfigError, match=rf"task\.options\.bogus: unknown option for task '{task}'; known: "):
        task_shape(TaskSettings(task, {"bogus": 1}))
    with pytest.raises(ConfigError) as err:
        task_shape(TaskSettings(task, {"bogus": 1}))
    assert ", ".join(TASKS.get(task).option_defaults()) in str(err.value)
