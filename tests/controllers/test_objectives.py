"""Objectives and the one Pareto module: values from metrics, the minimisation frame,
dominance and exact hypervolume (2-D against a brute force, N-D against known boxes)."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from dynas.controllers.objectives import is_finite, objective_values
from dynas.controllers.pareto import (dominates, hypervolume, hypervolume_improvement, non_dominated,
                                non_dominated_sort, to_minimise)
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from tests.controllers.conftest import ONE_OBJECTIVE, TWO_OBJECTIVES

METRICS = {names.FINAL_AVG_ACCURACY: 0.8, names.FLOPS: 2e6, names.PARAMS: 1e4}


def test_values_follow_objective_order():
    assert objective_values(METRICS, TWO_OBJECTIVES) == (0.8, 2e6)
    assert objective_values(METRICS, TWO_OBJECTIVES[::-1]) == (2e6, 0.8)
    assert objective_values(METRICS, ONE_OBJECTIVE) == (0.8,)


def test_missing_metric_names_it_and_the_available_ones():
    with pytest.raises(ConfigError) as err:
        objective_values({names.FLOPS: 1.0, names.PARAMS: 2.0}, TWO_OBJECTIVES)
    assert err.value.key == "search.objectives[0].metric"
    assert "'final_avg_accuracy'" in str(err.value)
    assert "available: flops, params" in str(err.value)


def test_minimisation_frame():
    assert to_minimise((0.8, 2e6), TWO_OBJECTIVES).tolist() == [[-0.8, 2e6]]
    assert to_minimise([(0.8, 2e6), (0.5, 1.0)], TWO_OBJECTIVES).tolist() == [[-0.8, 2e6], [-0.5, 1.0]]
    with pytest.raises(ValueError):
        to_minimise((0.8,), TWO_OBJECTIVES)


def test_the_one_finite_check():
    assert is_finite((0.1, 2.0)) and not is_finite(None)
    assert not is_finite((0.1, math.nan)) and not is_finite((math.inf,))


def test_dominance_and_front():
    assert dominates((1, 1), (1, 2)) and not dominates((1, 1), (1, 1))
    points = [(1, 5), (2, 2), (3, 3), (5, 1), (2, 2), (6, 6)]
    assert non_dominated(points) == [0, 1, 3, 4]
    assert non_dominated_sort(points).tolist() == [0, 0, 1, 0, 0, 2]


def test_hypervolume_of_known_staircases():
    assert hypervolume([], (1, 1)) == 0.0
    assert hypervolume([(0, 0)], (1, 1)) == 1.0
    # (1,3),(2,2),(3,1) with ref (4,4): 3 + 2*1 + 1*1 ... = 6
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    # points on or beyond the reference add nothing; dominated points add nothing
    assert hypervolume([(1, 3), (2, 2), (3, 1), (4, 0), (3, 3)], (4, 4)) == pytest.approx(6.0)


def _grid_area(points, ref) -> float:
    """Union of rectangles [p, ref] by coordinate compression: slow but obviously right."""
    xs = sorted({p[0] for p in points} | {ref[0]})
    ys = sorted({p[1] for p in points} | {ref[1]})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs, xs[1:]), zip(ys, ys[1:])):
        if any(p[0] <= x0 and p[1] <= y0 for p in points):
            area += (x1 - x0) * (y1 - y0)
    return area


def test_hypervolume_matches_a_brute_force_union_of_boxes():
    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.randint(0, 9) / 3, rng.random()) for _ in range(rng.randint(1, 12))]
        ref = (3.5, 1.0)
        assert hypervolume(points, ref) == pytest.approx(_grid_area(points, ref))


def test_hypervolume_improvement():
    front = [(1, 3), (3, 1)]
    assert hypervolume_improvement(front, (2, 2), (4, 4)) == pytest.approx(1.0)
    assert hypervolume_improvement(front, (3, 3), (4, 4)) == 0.0
    assert hypervolume_improvement([], (3, 3), (4, 4)) == 1.0
    assert not math.isnan(hypervolume_improvement(front, (5, 5), (4, 4)))


def test_hypervolume_in_three_dimensions_is_the_union_of_boxes():
    assert hypervolume([(0, 0, 0)], (1, 2, 3)) == pytest.approx(6.0)
    # two boxes of volume 1*1*2 and 2*1*1 overlapping in 1*1*1
    assert hypervolume([(1, 1, 0), (0, 1, 1)], (2, 2, 2)) == pytest.approx(3.0)
