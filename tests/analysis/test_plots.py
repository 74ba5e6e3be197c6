"""Figures: each is written, is a real image, and shows what it claims (the front's
colour is on the Pareto plot and nowhere on a figure that has no front)."""
import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pytest

from dynas.trainers.results import TrialMetrics
from dynas.analysis import plots
from dynas.analysis.load import load_runs
from dynas.analysis.pareto import pick, reference_point
from dynas.controllers.records import TrialRecord
from dynas.search_space import names
from dynas.search_space.errors import DynasError

OBJ = [(names.FINAL_AVG_ACCURACY, "max"), (names.FLOPS, "min")]


def colour_pixels(path, colour, tol=0.04) -> int:
    """How many pixels of the PNG are within ``tol`` of ``colour`` in every channel."""
    image = mimage.imread(path)[..., :3]  # (H, W, 3) floats in [0, 1]
    target = np.array(mcolors.to_rgb(colour))
    return int((np.abs(image - target) <= tol).all(-1).sum())


@pytest.fixture
def two_runs(runs):
    a = runs.make("a", runs.synthetic(30, seed=1), strategy="random")
    b = runs.make("b", runs.synthetic(30, seed=2), strategy="tpe")
    return load_runs([a, b])


def test_pareto_plot_draws_the_front_and_the_pick(two_runs, tmp_path):
    knee = pick(two_runs, "knee", OBJ)
    path = plots.plot_pareto(two_runs, tmp_path / "p.png", objectives=OBJ, pick=knee, pick_label="knee")
    assert path.is_file() and path.stat().st_size > 20_000
    assert colour_pixels(path, plots.FRONT_COLOR) > 300
    assert colour_pixels(path, plots.PICK_COLOR) > 100
    progress = plots.plot_progress(two_runs, tmp_path / "h.png", objectives=OBJ,
                                   ref=reference_point(two_runs, OBJ))
    assert colour_pixels(progress, plots.FRONT_COLOR) < 20  # the check can fail


def test_pareto_plot_of_a_single_trial(runs, tmp_path):
    df = load_runs(runs.make("one", [runs.record(0, runs.tiny_arch(), 0.5, 1e5)]))
    path = plots.plot_pareto(df, tmp_path / "p.png", objectives=OBJ, pick=df.iloc[0])
    assert colour_pixels(path, plots.FRONT_COLOR) > 30


def test_no_complete_trial_means_no_pareto_plot(runs, tmp_path):
    df = load_runs(runs.make("f", [runs.record(0, runs.tiny_arch(), 0.9, 1e5, state="failed")]))
    with pytest.raises(DynasError, match="no complete trial"):
        plots.plot_pareto(df, tmp_path / "p.png", objectives=OBJ)
    assert not (tmp_path / "p.png").exists()


def test_progress_plot_one_line_per_run(two_runs, tmp_path):
    path = plots.plot_progress(two_runs, tmp_path / "h.png", objectives=OBJ,
                               ref=reference_point(two_runs, OBJ))
    assert path.stat().st_size > 20_000
    for colour in plots.RUN_COLORS[:2]:
        assert colour_pixels(path, colour) > 200


def test_choice_frequencies_for_transformers_and_plain_params(two_runs, runs, tmp_path):
    path = plots.plot_choice_frequencies(two_runs, tmp_path / "c.png", objectives=OBJ)
    assert path.stat().st_size > 20_000 and colour_pixels(path, plots.FRONT_COLOR) > 500
    titles = [g[0] for g in plots.choice_groups(two_runs[two_runs["state"] == "complete"])]
    assert titles[:2] == ["attention kind", "FFN kind"]
    assert "layers" in titles and titles.count("layers") == 1  # param.layers repeats arch.layers

    plain = [TrialRecord(i, f"p{i}", {"opt": opt, "lr": lr}, {"opt": opt, "lr": lr}, "complete",
                         measured=TrialMetrics(values={names.FINAL_AVG_ACCURACY: acc, names.FLOPS: fl}))
             for i, (opt, lr, acc, fl) in enumerate([("adam", 0.1, 0.9, 10), ("sgd", 0.1, 0.5, 5),
                                                     ("adam", 0.01, 0.6, 20), ("sgd", 0.01, 0.4, 30)])]
    df = load_runs(runs.make("plain", plain))
    assert [g[0] for g in plots.choice_groups(df)] == ["lr", "opt"]
    assert plots.plot_choice_frequencies(df, tmp_path / "c2.png", objectives=OBJ).is_file()


def test_expert_load_plot(two_runs, tmp_path):
    path = plots.plot_expert_load(two_runs, tmp_path / "e.png")
    assert path.stat().st_size > 10_000
    assert colour_pixels(path, "#1f77b4") > 500  # the bars
    dense_only = two_runs[two_runs["expert_load"].map(lambda v: not v)]
    with pytest.raises(DynasError, match="no complete trial has expert_load"):
        plots.plot_expert_load(dense_only, tmp_path / "none.png")


def test_accuracy_matrix_heatmap(two_runs, tmp_path):
    index = two_runs.index[two_runs["state"] == "complete"][0]
    path = plots.plot_accuracy_matrix(two_runs, tmp_path / "r.png", index=index)
    assert path.stat().st_size > 10_000
    with pytest.raises(DynasError, match="no trial with index"):
        plots.plot_accuracy_matrix(two_runs, tmp_path / "x.png", index=10_000)


def test_numbers_read_like_units():
    assert plots.fmt(names.FLOPS, 1.234e6) == "1.23M"
    assert plots.fmt(names.FINAL_AVG_ACCURACY, 0.91234) == "0.9123"
    assert plots.fmt(names.PARAMS, float("nan")) == "–"
    assert plots.label(names.FLOPS, log=True) == "forward FLOPs per sample (log scale)"
