"""fit: metrics, determinism, resumable checkpoints, callbacks, the joint control."""
import pytest
import torch

from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import CurriculumSettings, ReplaySettings, TaskSettings, TrainingSettings
from dynas.trainers.fitting import LAST_CKPT, STATE_FILE, fit
from dynas.trainers.curves import read_scalars
from dynas.trainers.results import NonFiniteLoss
from dynas.trainers.system import LOSS_TERMS
from dynas.trainers.tasks import build_task

ARCH = ArchConfig(16, (LayerConfig(
    AttentionConfig("full", 2),
    FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 1), balance="aux_loss")),))
CFG = TrainingSettings(steps_per_experience=8, batch_size=16, device="cpu",
                       replay=ReplaySettings("reservoir", 50, der_alpha=0.2),
                       curriculum=CurriculumSettings(kind="entropy", eval_every=3, threshold=0.5, patience=1))


@pytest.fixture(scope="module")
def task():
    # 3 experiences (4 + 4 + 2 classes) keep the runs short
    return build_task(TaskSettings("split_digits", {"classes_per_experience": 4}), seed=0)


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory):
    """An uninterrupted checkpointed run, shared by the tests below."""
    out = tmp_path_factory.mktemp("ref")
    return fit(ARCH, task, CFG, checkpoint_dir=out, seed=3, log_dir=out / "curves"), out


def comparable(metrics):
    data = metrics.to_dict()
    data.pop("wall_time_s")
    data["values"].pop(names.LATENCY_MS)      # a measured time, not a result of the seed
    return data


def test_metrics_hold_every_name_and_the_matrix(reference, task):
    metrics, _ = reference
    assert set(names.ALL_METRICS) <= set(metrics.values)
    assert len(metrics.acc_matrix) == task.num_experiences
    assert all(len(row) == task.num_experiences for row in metrics.acc_matrix)
    assert metrics.steps == CFG.steps_per_experience * task.num_experiences
    assert metrics.values[names.FINAL_AVG_ACCURACY] == pytest.approx(
        sum(metrics.acc_matrix[-1]) / task.num_experiences)
    load = metrics.expert_load["layers.0.ffn"]
    assert len(load) == 4 and sum(load) == pytest.approx(1.0)
    assert {e["experience"] for e in metrics.curriculum_log} == {0, 1, 2}
    assert metrics.wall_time_s > 0
    # the validation pass after each experience: bits per experience, realised k
    assert [len(r) for r in metrics.bits_matrix] == [task.num_experiences] * task.num_experiences
    assert [d["experience"] for d in metrics.dynamics] == [0, 1, 2]
    assert metrics.dynamics[-1]["k"]["layers.0.ffn"]["mean"] == 1.0      # top-1 router
    assert metrics.values[names.FLOPS_EFFECTIVE] == metrics.values[names.FLOPS]   # nothing dynamic


def test_same_seed_same_metrics(reference, task):
    again = fit(ARCH, task, CFG, seed=3)
    assert comparable(again) == comparable(reference[0])


def test_resume_equals_an_uninterrupted_run(reference, task, tmp_path):
    class Crash:
        def on_experience_end(self, progress):
            if progress.experience == 1:
                raise KeyboardInterrupt("killed after experience 1")

    with pytest.raises(KeyboardInterrupt):
        fit(ARCH, task, CFG, [Crash()], checkpoint_dir=tmp_path, seed=3)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert state["done"] == 2 and len(state["acc_matrix"]) == 2
    seen = []
    resumed = fit(ARCH, task, CFG, [type("Rec", (), {"on_experience_end": lambda s, p: seen.append(p)})()],
                  checkpoint_dir=tmp_path, resume=True, seed=3)
    assert comparable(resumed) == comparable(reference[0])
    assert [p.experience for p in seen] == [2]


def test_resume_refuses_another_configuration(reference, task):
    _, out = reference
    with pytest.raises(DynasError, match="different arch_id"):
        other = ArchConfig(32, ARCH.layers)
        fit(other, task, CFG, checkpoint_dir=out, resume=True, seed=3)


def test_checkpoints_load_with_weights_only(reference):
    _, out = reference
    ckpt = torch.load(out / LAST_CKPT, weights_only=True)
    assert "state_dict" in ckpt and ckpt["replay"]["size"] == 50
    assert ckpt["hyper_parameters"]["arch"] == ARCH.to_dict()


def test_callbacks_hear_each_experience(task, device):
    seen = []

    class Recorder:
        def on_experience_end(self, progress):
            seen.append(progress)

    cfg = TrainingSettings(steps_per_experience=4, batch_size=16, device=device.type)
    metrics = fit(ARCH, task, cfg, [Recorder()])
    assert [p.experience for p in seen] == [0, 1, 2]
    assert [len(p.acc_matrix) for p in seen] == [1, 2, 3]
    assert all(p.num_experiences == 3 and p.checkpoint_dir is None for p in seen)
    assert names.FINAL_AVG_ACCURACY in seen[1].values
    # the effective cost mid-trial (for ASHA and the fidelity search), the final one last
    assert all(names.FLOPS_EFFECTIVE in p.values for p in seen)
    assert seen[-1].values[names.FLOPS_EFFECTIVE] == metrics.values[names.FLOPS_EFFECTIVE]


def test_joint_control_trains_once_on_the_union(task):
    cfg = TrainingSettings(steps_per_experience=5, batch_size=16, device="cpu", joint=True)
    metrics = fit(ARCH, task, cfg)
    assert metrics.steps == 15
    assert all(row == metrics.acc_matrix[0] for row in metrics.acc_matrix)
    assert len(metrics.acc_matrix) == 3
    assert metrics.values[names.FORGETTING_LAST] == 0.0


def test_divergence_raises_non_finite_loss(task):
    with pytest.raises(NonFiniteLoss):
        fit(ARCH, task, TrainingSettings(steps_per_experience=5, lr=100.0, device="cpu"))


def test_package_level_fit_is_the_function_whatever_the_import_order(task):
    import dynas.trainers
    import dynas.trainers.fitting
    from dynas.trainers import fit as package_fit

    assert package_fit is dynas.trainers.fit is dynas.trainers.fitting.fit
    metrics = package_fit(ARCH, task, TrainingSettings(steps_per_experience=2, device="cpu"))
    assert len(metrics.acc_matrix) == 3


def test_token_task_with_levels_masking_and_balanced_der_replay(device):
    """Per-token labels, task-IL heads, the task's own levels, input masking and a
    class-balanced (per-experience) DER++ buffer all go through one fit."""
    task = build_task(TaskSettings("assoc_recall", {"n_train": 120, "n_val": 40, "n_test": 40,
                                                    "n_experiences": 2}), seed=0)
    cfg = TrainingSettings(
        steps_per_experience=6, batch_size=16, device=device.type,
        replay=ReplaySettings("class_balanced", 30, der_alpha=0.1),
        curriculum=CurriculumSettings(kind="loss", eval_every=2, threshold=0.0, patience=1,
                                      mask_schedule="0.15->0.50"))
    metrics = fit(ARCH, task, cfg)
    assert len(metrics.acc_matrix) == 2 and all(0 <= a <= 1 for row in metrics.acc_matrix for a in row)
    stages = [(e["experience"], e["stage"]) for e in metrics.curriculum_log]
    assert stages == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_curves_hold_every_term_lr_accuracy_load_and_stages_on_one_step_axis(reference, task):
    """TensorBoard event files, read back with TensorBoard's own reader."""
    _, out = reference
    curves = read_scalars(out / "curves")
    steps, n = CFG.steps_per_experience, task.num_experiences
    for tag in [f"train/{t}" for t in ("task", "replay", "der", "balance")] + ["train/loss", "train/lr"]:
        assert tag in curves, tag
    assert {t for t in curves if t.startswith("train/")} <= {f"train/{t}" for t in LOSS_TERMS + ("loss", "lr")}
    assert [v for _, v in curves["train/lr"]] == pytest.approx([CFG.lr] * n)   # one point per experience
    # each experience's evaluation sits at its last step, on one axis across experiences
    for j in range(n):                       # validation (R_val) and test (R_test) accuracy
        for split in ("val", "test"):
            assert [s for s, _ in curves[f"{split}/acc_exp{j}"]] == [steps * (i + 1) for i in range(n)]
    assert [s for s, _ in curves["expert_load/layers.0.ffn/0"]] == [steps * (i + 1) for i in range(n)]
    assert [s for s, _ in curves["curriculum/stage"]][0] == 0
    # the curriculum's validation accuracy at every promotion check (eval_every=3)
    assert len(curves["curriculum/val_accuracy"]) >= n * (steps // CFG.curriculum.eval_every - 1)
    assert all(0 <= v <= 1 for _, v in curves["curriculum/val_accuracy"])


@pytest.mark.parametrize("log_every", [2, 4])
def test_curves_get_a_point_every_log_every_steps(task, tmp_path, log_every):
    cfg = TrainingSettings(steps_per_experience=8, batch_size=16, device="cpu", log_every=log_every)
    fit(ARCH, task, cfg, log_dir=tmp_path)
    loss = [s for s, _ in read_scalars(tmp_path)["train/loss"]]
    total = cfg.steps_per_experience * task.num_experiences        # a multiple of log_every
    assert loss == list(range(log_every, total + 1, log_every))


def test_terms_a_model_never_has_get_no_constant_zero_tag(task, tmp_path):
    dense = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", expansion=2)),))
    fit(dense, task, TrainingSettings(steps_per_experience=4, batch_size=16, device="cpu"), log_dir=tmp_path)
    tags = {t for t in read_scalars(tmp_path) if t.startswith("train/")}
    assert tags == {"train/task", "train/loss", "train/lr"}


def test_an_experience_shorter_than_log_every_still_gets_its_point(task, tmp_path):
    cfg = TrainingSettings(steps_per_experience=3, batch_size=16, device="cpu", log_every=10)
    fit(ARCH, task, cfg, log_dir=tmp_path)
    assert [s for s, _ in read_scalars(tmp_path)["train/loss"]] == [3, 6, 9]


def test_no_log_dir_no_curves(task, tmp_path):
    fit(ARCH, task, TrainingSettings(steps_per_experience=2, device="cpu"), checkpoint_dir=tmp_path)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
