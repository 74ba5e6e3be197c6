"""A cheap model of a candidate's score from its decisions, for PPO's screening step.

Candidates are encoded one-hot over every decision's options (a decision the space did
not ask, being inactive, is all zeros), and a ridge regression predicts the scalar
reward. Ridge, not an MLP: with tens of points a linear model in closed form is the
honest choice, it is deterministic, and it refits in microseconds after every tell.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from dynas.search_space.suggest import Decision


class OneHotEncoder:
    """Flat one-hot layout: decision i's options occupy ``offsets[i]:offsets[i]+n_i``."""

    def __init__(self, decisions: Sequence[Decision]):
        self.decisions = list(decisions)
        self.index = {d.name: i for i, d in enumerate(self.decisions)}
        self.offsets, total = [], 0
        for d in self.decisions:
            self.offsets.append(total)
            total += len(d.options)
        self.width = total

    def option_index(self, name: str, value: Any) -> int:
        options = self.decisions[self.index[name]].options
        for j, option in enumerate(options):
            if type(option) is type(value) and option == value:
                return j
        for j, option in enumerate(options):  # 2 == 2.0 when the types differ
            if option == value:
                return j
        raise ValueError(f"{value!r} is not an option of decision {name!r}: {list(options)}")

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        x = np.zeros(self.width)
        for name, value in params.items():
            if name in self.index:
                x[self.offsets[self.index[name]] + self.option_index(name, value)] = 1.0
        return x


class RidgeSurrogate:
    """y ~ mean(y) + X w, w = (X'X + alpha I)^-1 X'(y - mean(y))."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha
        self._mean = 0.0
        self._w: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self._w is not None

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RidgeSurrogate":
        X, y = np.asarray(X, float), np.asarray(y, float)   # (N, F), (N,)
        self._mean = float(y.mean())
        gram = X.T @ X + self.alpha * np.eye(X.shape[1])     # (F, F)
        self._w = np.linalg.solve(gram, X.T @ (y - self._mean))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self._w is None:
            raise RuntimeError("surrogate not fitted")
        return self._mean + np.asarray(X, float) @ self._w   # (N,)
