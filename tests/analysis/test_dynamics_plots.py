"""The report's dynamic-block figures: spans per layer and head, realised-k
histograms and expert load (dead experts flagged) per MoE layer, drawn from a real
run's dynamics, non-empty, and absent (not empty) for a trial with nothing dynamic."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dynas.analysis.dynamics_plots import (DEAD_SHARE, dead_experts, dynamics_figures, dynamics_section,
                                           load_table, plot_expert_load_history)
from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig,
                                     RouterConfig)
from dynas.search_space.settings import TaskSettings, TrainingSettings
from dynas.trainers.curves import read_scalars
from dynas.trainers.fitting import fit
from dynas.trainers.tasks import build_task

ARCH = ArchConfig(16, (LayerConfig(AttentionConfig("dynamic_span", 2, max_span=16),
                                   FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("dynamic", 3, 0.6),
                                             capacity_factor=0.0)),))


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    return tmp_path_factory.mktemp("curves")


@pytest.fixture(scope="module")
def trials(curves):
    task = build_task(TaskSettings("span_range", {"distances": [3, 9], "seq_len": 16,
                                                  "n_train": 64, "n_val": 16, "n_test": 16}))
    metrics = fit(ARCH, task, TrainingSettings(steps_per_experience=3, batch_size=16, device="cpu"),
                  log_dir=curves)
    return pd.DataFrame([{"proposal_id": "p1", "arch_id": ARCH.arch_id, "run": "r", "dynamics": metrics.dynamics,
                          "expert_load": metrics.expert_load},
                         {"proposal_id": "p2", "arch_id": "x", "run": "r", "dynamics": [], "expert_load": {}}])


def test_each_front_trial_with_dynamic_blocks_gets_its_figures(trials, tmp_path):
    figures = dynamics_figures(trials, trials, tmp_path)
    assert set(figures) == {"spans_p1", "realised_k_p1", "expert_load_p1"}     # p2 measured nothing
    for path in figures.values():
        width, height = Image.open(path).size
        assert path.stat().st_size > 5000 and width > 300 and height > 200
    section = dynamics_section(trials, trials, tmp_path)
    assert "![spans_p1](spans_p1.png)\n" in section
    assert "![expert_load_p1](expert_load_p1.png)\n" in section


def test_expert_load_is_measured_after_every_experience(trials):
    """One load per experience and MoE layer, shares of the validation pass's routed
    slots; the last is the record's final expert load (the same validation splits)."""
    dynamics = trials.loc[0, "dynamics"]
    assert [sorted(e["expert_load"]) for e in dynamics] == [["layers.0.ffn"]] * 2
    for entry in dynamics:
        load = entry["expert_load"]["layers.0.ffn"]
        assert len(load) == 4 and sum(load) == pytest.approx(1.0)
    assert dynamics[-1]["expert_load"]["layers.0.ffn"] == pytest.approx(trials.loc[0, "expert_load"]["layers.0.ffn"])


def test_dead_experts_are_those_under_the_stated_share():
    """A constructed load table: expert 3 is dead throughout, expert 2 dies after
    experience 0 (0.5% < 1%), a share of exactly 1% is alive."""
    table = np.array([[0.50, 0.30, 0.19, 0.01],
                      [0.60, 0.395, 0.005, 0.0]])
    assert DEAD_SHARE == 0.01
    assert dead_experts(table).tolist() == [[False, False, False, False], [False, False, True, True]]
    assert dead_experts(table, threshold=0.2).tolist() == [[False, False, True, True], [False, False, True, True]]
    dynamics = [{"experience": e, "expert_load": {"layers.1.ffn": list(row)}} for e, row in enumerate(table)]
    exps, back = load_table(dynamics, "layers.1.ffn")
    assert exps == [0, 1] and back.tolist() == table.tolist()


def test_the_load_figure_names_the_dead_experts(tmp_path):
    row = pd.Series({"proposal_id": "p", "arch_id": "a", "run": "r", "dynamics": [
        {"experience": 0, "expert_load": {"layers.0.ffn": [0.5, 0.3, 0.19, 0.01]}},
        {"experience": 1, "expert_load": {"layers.0.ffn": [0.6, 0.395, 0.005, 0.0]}}]})
    path = plot_expert_load_history(row, tmp_path / "load.png")
    width, height = Image.open(path).size
    assert path.stat().st_size > 5000 and width > 300 and height > 200
    df = pd.DataFrame([row])
    assert "Trial p, layers.0.ffn: dead experts at the end: 2, 3\n" in dynamics_section(df, df, tmp_path)


def test_a_record_from_before_the_load_was_measured_gets_no_load_figure(tmp_path):
    old = pd.DataFrame([{"proposal_id": "p", "arch_id": "a", "run": "r", "dynamics": [
        {"experience": 0, "spans": {}, "k": {"layers.0.ffn": {"mean": 1.5, "hist": [0, 5, 5]}}}]}])
    assert set(dynamics_figures(old, old, tmp_path)) == {"realised_k_p"}


def test_tensorboard_gets_each_heads_span_after_each_experience(trials, curves):
    scalars = read_scalars(curves)
    for head in (0, 1):
        points = scalars[f"span/layers.0.attn/head{head}"]
        assert [s for s, _ in points] == [3, 6]
        assert [v for _, v in points] == pytest.approx(
            [e["spans"]["layers.0.attn"]["heads"][head] for e in trials.loc[0, "dynamics"]])
    assert len(scalars["realised_k/layers.0.ffn"]) == 2


def test_no_dynamics_column_means_no_figure(tmp_path):
    df = pd.DataFrame([{"proposal_id": "p", "arch_id": "a", "run": "r"}])
    assert dynamics_figures(df, df, tmp_path) == {} and dynamics_section(df, df, tmp_path) == []
