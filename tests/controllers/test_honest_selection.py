"""Selection sees validation only: the test split is recorded, never told.

The task here has a test split that is deliberately shifted from its validation
split (the same images, each experience's two labels swapped), scored task-IL (two
classes per experience), so the test accuracy of every experience is exactly one
minus its validation accuracy. Whatever a policy is told must then equal the
validation numbers and differ from the test numbers.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from dynas.trainers.results import TrialMetrics
from dynas.controllers.run.in_process import fit_evaluator, run_local
from dynas.controllers.policies import make_policy
from dynas.controllers.run.prepare import feasibility
from dynas.controllers.results import parse_result, tune_result
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import parse_experiment
from dynas.trainers.tasks import TASKS, build_task, register_task, task_shape
from dynas.search_space.settings import TaskSettings

SHIFTED = "split_digits_shifted_test"


def _swap(y: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    a, b = classes
    return torch.where(y == a, torch.full_like(y, b), torch.full_like(y, a))


def shifted_digits(seed: int = 0, **options):
    task = build_task(TaskSettings("split_digits", options), seed=seed)
    exps = []
    for exp in task.experiences:
        x, y = exp.val.tensors
        exps.append(dataclasses.replace(exp, test=TensorDataset(x, _swap(y, exp.classes))))
    return dataclasses.replace(task, name=SHIFTED, experiences=exps, scenario="task_il")


@pytest.fixture(autouse=True)
def shifted_task():
    """Registered for this module's tests only, so no other suite (the task registry's
    contract in tests/test_registries.py) sees a test's task."""
    with TASKS.kept():
        register_task(SHIFTED, shape=lambda **o: task_shape(TaskSettings("split_digits", o)),
                      description="split_digits whose test split is its val split with labels swapped")(shifted_digits)
        yield SHIFTED


class Listening:
    """A policy that remembers every value it is told (and delegates the rest)."""

    def __init__(self, policy):
        self.inner, self.told = policy, []

    def tell(self, proposal_id, outcome):
        self.told.append(outcome.values)
        self.inner.tell(proposal_id, outcome)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _experiment(**search):
    return parse_experiment({
        "space": {"layers": [1], "d_model": [16], "layer": {
            "attention": [{"kind": "full", "heads": [2, 4]}], "ffn": [{"kind": "dense", "expansion": [2]}]}},
        "task": {"name": SHIFTED},
        "training": {"steps_per_experience": 3, "batch_size": 16, "device": "cpu"},
        "search": {"strategy": "random", "trials": 2, "seed": 0, **search},
    })


@pytest.mark.slow
def test_the_policy_is_told_validation_values_only(tmp_path):
    experiment = _experiment()
    search = experiment.search
    policy = Listening(make_policy("random", experiment.space, search.objectives, 0, search))
    records = run_local(experiment.space, fit_evaluator(experiment), policy, search.objectives,
                        tmp_path, trials=2, feasible=feasibility(experiment))
    trained = [r for r in records if r.cached_from is None]
    assert len(trained) == 2 and all(r.state == "complete" for r in trained)
    for record, told in zip(trained, policy.told):
        m = record.metrics
        val, test = m[names.FINAL_AVG_ACCURACY], m[names.as_test(names.FINAL_AVG_ACCURACY)]
        # the shift worked: every test entry is 1 - its validation entry
        for val_row, test_row in zip(record.acc_matrix, record.test_acc_matrix):
            assert test_row == pytest.approx([1 - v for v in val_row])
        assert val != pytest.approx(test)
        assert told == (val, m[names.FLOPS]) == tuple(record.objectives)
        assert not any(names.is_test_metric(k) for k in names.selection_metrics(m))
        assert record.chance_accuracy == 0.5          # task-IL: 1 / (2 classes per experience)


def test_chance_level_is_one_over_the_classes_a_prediction_ranges_over():
    digits = TaskSettings("split_digits", {"classes_per_experience": 5, "patch": 4})
    task = build_task(digits)
    assert task.chance_accuracy == pytest.approx(0.1)                          # class-IL: 10 classes
    assert dataclasses.replace(task, scenario="task_il").chance_accuracy == pytest.approx(0.2)   # 5 each


def test_tune_scalars_hold_no_test_metric():
    """ASHA reads Tune's scalars: they are validation metrics and costs; the test
    twins travel in the blob for the record only."""
    metrics = {names.FINAL_AVG_ACCURACY: 0.9, names.as_test(names.FINAL_AVG_ACCURACY): 0.1, names.FLOPS: 5.0}
    result = tune_result(TrialMetrics(values=metrics, test_acc_matrix=[[0.1]]), 1, 2)
    assert names.as_test(names.FINAL_AVG_ACCURACY) not in result
    assert result[names.FINAL_AVG_ACCURACY] == 0.9
    assert parse_result(result)["measured"]["values"] == metrics
    assert parse_result(result)["measured"]["test_acc_matrix"] == [[0.1]]


@pytest.mark.parametrize("metric", ["test.final_avg_accuracy", "test.anything_added_later"])
def test_a_test_metric_as_objective_is_refused(metric):
    with pytest.raises(ConfigError, match=r"search\.objectives\[1\]\.metric: .*held-out test split"):
        _experiment(objectives=[{"metric": "flops", "direction": "min"},
                                {"metric": metric, "direction": "max"}])
