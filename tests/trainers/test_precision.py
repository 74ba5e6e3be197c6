"""training.precision: bf16 autocasts the training and evaluation forwards (weights stay
float32), fp32 leaves them alone; the setting round-trips and a bad value is refused."""
import dataclasses
import typing

import pytest
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.schema import from_mapping
from dynas.search_space.settings import TaskSettings, TrainingSettings, settings_dict
from dynas.trainers.evaluation import eval_mode
from dynas.trainers.fitting import fit
from dynas.trainers.loop import make_trainer
from dynas.trainers.precision import LIGHTNING
from dynas.trainers.tasks import build_task
from tests.test_bad_input import Case, assert_refused, variant, workdir  # noqa: F401 (fixture)

ARCH = ArchConfig(16, (LayerConfig(
    AttentionConfig("full", 2),
    FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2), balance="aux_loss")),))
CFG = TrainingSettings(steps_per_experience=6, batch_size=16, device="cpu")


def test_every_precision_choice_has_a_lightning_precision():
    choices = typing.get_args(typing.get_type_hints(TrainingSettings)["precision"])
    assert set(choices) == set(LIGHTNING) and TrainingSettings().precision == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_setting_round_trips_and_reaches_the_trainer(precision):
    cfg = dataclasses.replace(CFG, precision=precision)
    assert from_mapping(TrainingSettings, settings_dict(cfg), "training") == cfg
    assert make_trainer(cfg, steps=1).precision == LIGHTNING[precision]


@pytest.fixture(scope="module")
def task():
    return build_task(TaskSettings("split_digits", {"classes_per_experience": 5}), seed=0)


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_training_and_evaluation_forwards_run_in_the_precision(task, precision, dtype):
    """A hook on the head sees every forward of a real fit: training steps (grad on) and
    the evaluation passes (grad off) alike run in ``precision``; weights stay float32."""
    seen: set[tuple[bool, torch.dtype]] = set()
    model_ref = []

    def watch(model):
        model_ref.append(model)
        model.head.register_forward_hook(
            lambda m, args, out: seen.add((torch.is_grad_enabled(), out.dtype)))

    metrics = fit(ARCH, task, dataclasses.replace(CFG, precision=precision), init=watch)
    assert seen == {(True, dtype), (False, dtype)}
    assert all(p.dtype == torch.float32 for p in model_ref[0].parameters())
    assert all(0.0 <= a <= 1.0 for row in metrics.acc_matrix for a in row)
    assert torch.isfinite(torch.tensor(metrics.values["final_avg_accuracy"]))


def test_eval_mode_autocasts_on_the_models_device():
    layer = torch.nn.Linear(4, 3)
    with eval_mode(layer, "bf16"):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with eval_mode(layer):
        assert layer(torch.randn(2, 4)).dtype == torch.float32


def test_an_unknown_precision_is_one_line_exit_2(workdir):
    text = variant("device: cpu", "device: cpu\n  precision: fp16")
    assert_refused(Case("precision", {"precision.yaml": text}, ("space", "validate", "precision.yaml"),
                        ("precision.yaml", "training.precision", "fp16")), workdir)
