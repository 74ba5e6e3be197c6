"""Continual-learning metrics from the accuracy matrix.

``R[i][j]`` is the accuracy on experience j after training through experience i, on
its validation split (R_val: what a search selects on) or its test split (R_test:
held out; ``with_test`` names those metrics ``test.<name>``).
Rows may be full (every experience measured after every step, shape (t, T)) or ragged
(row i holds at least j = 0..i). With ``last`` the index of the last trained
experience:

* final average accuracy   mean_{j<=last} R[last][j]
* forgetting (last)        mean_{j<last} R[j][j] - R[last][j]          (Avalanche)
* forgetting (max)         mean_{j<last} max_{l<last} R[l][j] - R[last][j]
                           (Chaudhry et al. 2018, RWalk; l runs over every earlier row
                           that measured j, including rows before j was trained)
* backward transfer        mean_{j<last} R[last][j] - R[j][j]          (Lopez-Paz & Ranzato 2017)
* learning accuracy        mean_{j<=last} R[j][j]                      (Riemer et al. 2019)
* anytime avg. accuracy    mean_{i<=last} mean_{j<=i} R[i][j]          (Caccia et al. 2022)

With a single experience trained there is nothing to forget: forgetting and BWT are
0.0 rather than undefined, so records always carry every metric.
"""
from __future__ import annotations

from typing import Sequence

import torch

from dynas.search_space.names import (ANYTIME_AVG_ACCURACY, BWT, FINAL_AVG_ACCURACY, FORGETTING_LAST,
                                FORGETTING_MAX, LEARNING_ACCURACY, as_test)


def _rows(matrix: Sequence[Sequence[float]] | torch.Tensor) -> list[list[float]]:
    if isinstance(matrix, torch.Tensor):
        if matrix.dim() != 2:
            raise ValueError(f"accuracy matrix must be 2-D, got shape {tuple(matrix.shape)}")
        return matrix.detach().double().cpu().tolist()
    return [[float(v) for v in row] for row in matrix]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def continual_metrics(matrix: Sequence[Sequence[float]] | torch.Tensor, trained: int | None = None) -> dict[str, float]:
    """All continual metrics, keyed by the names in ``search_space.names``.

    ``trained``: experiences trained so far (rows used); default all rows of ``matrix``.
    """
    rows = _rows(matrix)
    trained = len(rows) if trained is None else trained
    if not 1 <= trained <= len(rows):
        raise ValueError(f"trained={trained} needs 1..{len(rows)} rows of the accuracy matrix")
    for i in range(trained):
        if len(rows[i]) <= i:
            raise ValueError(f"row {i} of the accuracy matrix needs R[{i}][0..{i}], has {len(rows[i])} entries")
    last = trained - 1
    final = rows[last]
    diagonal = [rows[j][j] for j in range(trained)]
    best_before = [max(rows[l][j] for l in range(last) if len(rows[l]) > j) for j in range(last)]
    forgetting = [diagonal[j] - final[j] for j in range(last)]
    return {
        FINAL_AVG_ACCURACY: _mean(final[:trained]),
        FORGETTING_LAST: _mean(forgetting),
        FORGETTING_MAX: _mean([best_before[j] - final[j] for j in range(last)]),
        BWT: _mean([-f for f in forgetting]),
        LEARNING_ACCURACY: _mean(diagonal),
        ANYTIME_AVG_ACCURACY: _mean([_mean(rows[i][:i + 1]) for i in range(trained)]),
    }


def with_test(val_matrix: Sequence[Sequence[float]] | torch.Tensor,
              test_matrix: Sequence[Sequence[float]] | torch.Tensor | None,
              trained: int | None = None) -> dict[str, float]:
    """Continual metrics of R_val under their plain names, and of R_test (when given and
    non-empty) as ``test.<name>``: the two must never be confused downstream."""
    values = continual_metrics(val_matrix, trained)
    if test_matrix is not None and len(test_matrix):
        values |= {as_test(k): v for k, v in continual_metrics(test_matrix, trained).items()}
    return values
