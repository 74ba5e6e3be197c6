"""Continual metrics on hand-made accuracy matrices; expected numbers computed by hand."""
import pytest
import torch

from dynas.search_space.names import (ANYTIME_AVG_ACCURACY, BWT, FINAL_AVG_ACCURACY, FORGETTING_LAST,
                                FORGETTING_MAX, LEARNING_ACCURACY)
from dynas.trainers.continual import continual_metrics

# R[i][j]: accuracy on experience j after training through experience i.
# Row 1 improves on experience 0 (0.95 > 0.9), so the two forgetting measures differ.
R = [
    [0.90, 0.10, 0.00],
    [0.95, 0.80, 0.20],
    [0.50, 0.70, 0.95],
]


def test_three_experiences_by_hand():
    m = continual_metrics(R)
    assert m[FINAL_AVG_ACCURACY] == pytest.approx((0.50 + 0.70 + 0.95) / 3)           # 0.7167
    assert m[FORGETTING_LAST] == pytest.approx(((0.90 - 0.50) + (0.80 - 0.70)) / 2)   # 0.25
    assert m[FORGETTING_MAX] == pytest.approx(((0.95 - 0.50) + (0.80 - 0.70)) / 2)    # 0.275
    assert m[BWT] == pytest.approx(-0.25)
    assert m[LEARNING_ACCURACY] == pytest.approx((0.90 + 0.80 + 0.95) / 3)            # 0.8833
    anytime = (0.90 + (0.95 + 0.80) / 2 + (0.50 + 0.70 + 0.95) / 3) / 3                  # 0.8306
    assert m[ANYTIME_AVG_ACCURACY] == pytest.approx(anytime)
    assert m[ANYTIME_AVG_ACCURACY] == pytest.approx(0.830555, abs=1e-6)


def test_prefix_of_the_stream_uses_only_trained_rows():
    m = continual_metrics(R, trained=2)
    assert m[FINAL_AVG_ACCURACY] == pytest.approx(0.875)
    assert m[FORGETTING_LAST] == pytest.approx(0.90 - 0.95)       # negative: it improved
    assert m[FORGETTING_MAX] == pytest.approx(0.90 - 0.95)        # max over row 0 only
    assert m[BWT] == pytest.approx(0.05)
    assert m[LEARNING_ACCURACY] == pytest.approx(0.85)
    assert m[ANYTIME_AVG_ACCURACY] == pytest.approx((0.90 + 0.875) / 2)
    assert continual_metrics(R[:2]) == pytest.approx(m)


def test_one_experience_has_zero_forgetting_and_bwt():
    m = continual_metrics([[0.7, 0.1]])
    assert m == {FINAL_AVG_ACCURACY: 0.7, FORGETTING_LAST: 0.0, FORGETTING_MAX: 0.0, BWT: 0.0,
                 LEARNING_ACCURACY: 0.7, ANYTIME_AVG_ACCURACY: 0.7}


def test_forgetting_max_includes_rows_before_the_experience_was_trained():
    # Chaudhry's max runs over every l < last: R[0][1] = 0.85 beats R[1][1] = 0.8.
    m = continual_metrics([[0.90, 0.85, 0.0], [0.95, 0.80, 0.2], [0.50, 0.70, 0.95]])
    assert m[FORGETTING_MAX] == pytest.approx(((0.95 - 0.50) + (0.85 - 0.70)) / 2)   # 0.3
    assert m[FORGETTING_LAST] == pytest.approx(0.25)


def test_ragged_lower_triangle_and_tensor_agree_with_full_matrix():
    ragged = [row[:i + 1] for i, row in enumerate(R)]
    full = continual_metrics(R)
    assert continual_metrics(ragged) == pytest.approx(full)
    assert continual_metrics(torch.tensor(R)) == pytest.approx(full)


def test_perfect_memory_has_no_forgetting():
    m = continual_metrics([[1.0, 0.0], [1.0, 1.0]])
    assert m[FORGETTING_LAST] == m[FORGETTING_MAX] == m[BWT] == 0.0
    assert m[FINAL_AVG_ACCURACY] == m[LEARNING_ACCURACY] == 1.0
    assert m[ANYTIME_AVG_ACCURACY] == pytest.approx(1.0)


@pytest.mark.parametrize("matrix, trained", [([], None), ([[0.5], [0.4]], None), (R, 4), (R, 0)])
def test_malformed_matrices_are_rejected(matrix, trained):
    with pytest.raises(ValueError):
        continual_metrics(matrix, trained)
