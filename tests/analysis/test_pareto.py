"""Non-dominated sorting, exact hypervolume (numbers worked out by hand), the
reference-point rule, the knee and the pick rules."""
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynas.analysis.load import load_runs
from dynas.analysis.pareto import (hypervolume, knee_index, non_dominated_sort, pareto_front,
                             parse_flops, pick, reference_point, running_hypervolume)
from dynas.search_space import names
from dynas.search_space.errors import DynasError

ACC_FLOPS = [(names.FINAL_AVG_ACCURACY, "max"), (names.FLOPS, "min")]
MIN3 = [("a", "min"), ("b", "min"), ("c", "min")]


# --- non-dominated sorting -------------------------------------------------------------
def test_ranks_peel_fronts_one_layer_at_a_time():
    # (acc, flops): three non-dominated; (0.7, 80) is beaten by (0.8, 50); (0.6, 90) by
    # (0.7, 80); (0.4, 95) by (0.6, 90).
    pts = np.array([[0.9, 100], [0.8, 50], [0.5, 20], [0.7, 80], [0.6, 90], [0.4, 95]])
    assert non_dominated_sort(pts, ACC_FLOPS).tolist() == [0, 0, 0, 1, 2, 3]


def test_equal_points_share_a_rank_and_direction_matters():
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    assert non_dominated_sort(pts, [("x", "min"), ("y", "min")]).tolist() == [0, 0, 1]
    assert non_dominated_sort(pts, [("x", "max"), ("y", "max")]).tolist() == [1, 1, 0]
    assert non_dominated_sort(pts, [("x", "min"), ("y", "max")]).tolist() == [0, 0, 0]


def test_three_objective_ranks():
    pts = np.array([[1, 1, 3], [2, 2, 1], [3, 3, 3], [3, 0.5, 2], [4, 4, 4]])
    # (3,3,3) is dominated by (1,1,3); (4,4,4) by everything, including (3,3,3)
    assert non_dominated_sort(pts, MIN3).tolist() == [0, 0, 1, 0, 2]


# --- hypervolume -----------------------------------------------------------------------
def test_hypervolume_2d_by_hand():
    # Staircase against ref (acc 0, flops 200), sweeping flops:
    # [20, 50) x 0.5 = 15, [50, 100) x 0.8 = 40, [100, 200) x 0.9 = 90 -> 145
    front = np.array([[0.9, 100], [0.8, 50], [0.5, 20]])
    assert hypervolume(front, (0.0, 200.0), ACC_FLOPS) == pytest.approx(145.0)
    # a dominated point and one beyond the reference change nothing
    more = np.vstack([front, [[0.7, 80], [0.99, 250]]])
    assert hypervolume(more, (0.0, 200.0), ACC_FLOPS) == pytest.approx(145.0)


def test_hypervolume_3d_by_hand():
    # Boxes to ref (4,4,4): a=(1,1,3): 3*3*1=9; b=(2,2,1): 2*2*3=12; d=(3,.5,2): 1*3.5*2=7.
    # Pairwise overlaps: a^b=(2,2,3): 2*2*1=4; a^d=(3,1,3): 1*3*1=3; b^d=(3,2,2): 1*2*2=4;
    # a^b^d=(3,2,3): 1*2*1=2.  Union = 9+12+7-4-3-4+2 = 19. (3,3,3) is dominated by a.
    pts = np.array([[1, 1, 3], [2, 2, 1], [3, 3, 3], [3, 0.5, 2]])
    assert hypervolume(pts, (4, 4, 4), MIN3) == pytest.approx(19.0)
    # the same geometry with the first objective maximised (negated values and ref)
    flipped = pts * np.array([-1, 1, 1])
    assert hypervolume(flipped, (-4, 4, 4), [("a", "max"), ("b", "min"), ("c", "min")]) == pytest.approx(19.0)


def test_hypervolume_of_nothing_is_zero():
    assert hypervolume(np.zeros((0, 2)), (0.0, 1.0), ACC_FLOPS) == 0.0
    assert hypervolume(np.array([[0.5, 2.0]]), (0.0, 1.0), ACC_FLOPS) == 0.0  # beyond ref


def _inclusion_exclusion(pts, ref):
    """Union of boxes [p, ref] (minimisation), summed over every subset: exponential
    but independent of the sweep and the slicing."""
    total = 0.0
    for size in range(1, len(pts) + 1):
        for subset in combinations(pts, size):
            corner = np.max(subset, axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 3), st.lists(st.tuples(*[st.integers(0, 9)] * 3), min_size=1, max_size=6))
def test_hypervolume_matches_inclusion_exclusion(m, raw):
    pts = np.array(raw, dtype=float)[:, :m]
    ref = np.full(m, 10.0)
    expected = _inclusion_exclusion(pts, ref)
    assert hypervolume(pts, ref, MIN3[:m]) == pytest.approx(expected)


# --- data frames: fronts, reference point, running hypervolume ----------------------------
def _frame(runs, rows, name="r", **kw):
    records = []
    for pid, (acc, flops, *state) in enumerate(rows):
        st_ = state[0] if state else "complete"
        records.append(runs.record(pid, runs.tiny_arch(), acc, flops, state=st_,
                                   reason="boom" if st_ == "failed" else None))
    return load_runs(runs.make(name, records, **kw))


def test_front_ignores_failed_and_incomplete_trials(runs):
    df = _frame(runs, [(0.9, 100), (0.99, 1, "failed"), (0.8, 50), (None, 10), (0.7, 80)])
    front = pareto_front(df, ACC_FLOPS)
    assert front["proposal_id"].tolist() == [0, 2]  # best accuracy first


def test_reference_point_rule(runs):
    df = _frame(runs, [(0.9, 100), (0.5, 20), (0.7, 60), (0.1, 1e9, "failed")])
    # accuracy -> 0; flops -> worst complete (100) + 10% of the range (80) = 108
    assert reference_point(df, ACC_FLOPS) == pytest.approx((0.0, 108.0))
    assert reference_point(df, ACC_FLOPS, {names.FLOPS: 500}) == pytest.approx((0.0, 500.0))
    assert reference_point(df, ACC_FLOPS, (0.2, 300)) == pytest.approx((0.2, 300.0))
    # a maximised metric that is not an accuracy is padded downwards: -0.3 - 0.1 * 0.2
    bwt = df.assign(**{names.BWT: [-0.1, -0.3, -0.2, np.nan]})
    assert reference_point(bwt, [(names.BWT, "max"), (names.FLOPS, "min")]) == pytest.approx((-0.32, 108))
    # a zero range pads by 10% of the value
    one = _frame(runs, [(0.5, 50)], name="one")
    assert reference_point(one, ACC_FLOPS) == pytest.approx((0.0, 55.0))


def test_running_hypervolume_steps_with_each_trial(runs):
    df = _frame(runs, [(0.5, 20), (0.1, 1, "failed"), (0.8, 50), (0.7, 80), (0.9, 100)])
    hist = running_hypervolume(df, ACC_FLOPS, (0.0, 200.0))
    # 0.5*180 = 90; failed keeps 90; +0.3*150 -> 135; dominated keeps 135; +0.1*100 -> 145
    assert hist["hypervolume"].tolist() == pytest.approx([90, 90, 135, 135, 145])
    assert hist[f"best.{names.FINAL_AVG_ACCURACY}"].tolist() == pytest.approx([0.5, 0.5, 0.8, 0.8, 0.9])
    assert hist[f"best.{names.FLOPS}"].tolist() == pytest.approx([20, 20, 20, 20, 20])
    assert hist["trial"].tolist() == [0, 1, 2, 3, 4]


# --- knee -------------------------------------------------------------------------------
def test_knee_is_farthest_from_the_line_between_extremes():
    # normalised (flops, error): (0,1) (0.2,0.2) (1,0) (0.6,0.05); the line x + y = 1
    # is at distance 0.6/sqrt2 from (0.2, 0.2) and 0.35/sqrt2 from (0.6, 0.05).
    # In units: flops = 10 + 100 x, accuracy = 1 - error.
    front = np.array([[0.0, 10], [0.8, 30], [1.0, 110], [0.95, 70]])
    assert knee_index(front, ACC_FLOPS) == 1
    # (0.05, 0.5) bulges more (0.45/sqrt2 vs 0.4/sqrt2) though (0.3, 0.3) is nearer the ideal
    front = np.array([[0.0, 10], [0.7, 40], [0.5, 15], [1.0, 110]])
    assert knee_index(front, ACC_FLOPS) == 2


def test_knee_without_a_bulge_is_closest_to_ideal():
    straight = np.array([[0.0, 10], [0.5, 60], [1.0, 110]])  # collinear after normalising
    assert knee_index(straight, ACC_FLOPS) == 1
    # 3-D: normalised distances to the origin 1, 1, 1 and sqrt(0.25*3) for the middle one
    pts = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5]], dtype=float)
    assert knee_index(pts, MIN3) == 3
    assert knee_index(np.array([[0.5, 3.0]]), ACC_FLOPS) == 0


# --- pick rules -------------------------------------------------------------------------
def test_pick_rules(runs):
    df = _frame(runs, [(0.9, 100), (0.9, 90), (0.8, 30), (0.5, 10), (0.95, 5, "failed")])
    assert pick(df, "best-accuracy", ACC_FLOPS)["proposal_id"] == 1  # tie -> fewer FLOPs
    assert pick(df, "max-flops=30", ACC_FLOPS)["proposal_id"] == 2
    assert pick(df, "max-flops=29.9", ACC_FLOPS)["proposal_id"] == 3
    assert pick(df, "knee", ACC_FLOPS)["proposal_id"] == 2
    with pytest.raises(DynasError, match="cheapest has 10"):
        pick(df, "max-flops=9", ACC_FLOPS)
    with pytest.raises(DynasError, match="unknown pick rule 'fastest'; rules: knee"):
        pick(df, "fastest", ACC_FLOPS)
    with pytest.raises(DynasError, match="max-flops=lots"):
        pick(df, "max-flops=lots", ACC_FLOPS)


def test_pick_with_nothing_complete_is_a_user_error(runs):
    df = _frame(runs, [(0.9, 100, "failed")])
    for rule in ("knee", "best-accuracy", "max-flops=1e9"):
        with pytest.raises(DynasError):
            pick(df, rule, ACC_FLOPS)


def test_parse_flops_suffixes():
    assert parse_flops("2e6") == 2e6
    assert parse_flops("2.5M") == 2.5e6
    assert parse_flops("300k") == 3e5
    assert parse_flops("1.5G") == 1.5e9
