"""The report's dynamic-block figures: spans per layer and head and realised-k
histograms per MoE layer, drawn from a real run's dynamics, non-empty, and absent (not
empty) for a trial with nothing dynamic."""
import pandas as pd
import pytest
from PIL import Image

from dynas.analysis.dynamics_plots import dynamics_figures, dynamics_section
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
    return pd.DataFrame([{"proposal_id": "p1", "arch_id": ARCH.arch_id, "run": "r", "dynamics": metrics.dynamics},
                         {"proposal_id": "p2", "arch_id": "x", "run": "r", "dynamics": []}])


def test_each_front_trial_with_dynamic_blocks_gets_both_figures(trials, tmp_path):
    figures = dynamics_figures(trials, trials, tmp_path)
    assert set(figures) == {"spans_p1", "realised_k_p1"}          # p2 measured nothing
    for path in figures.values():
        width, height = Image.open(path).size
        assert path.stat().st_size > 5000 and width > 300 and height > 200
    section = dynamics_section(trials, trials, tmp_path)
    assert "![spans_p1](spans_p1.png)\n" in section


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
