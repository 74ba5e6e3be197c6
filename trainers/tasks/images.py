"""Shared helpers of the image tasks: patch tokens, option checks, splits, class-IL.

Images become sequences of non-overlapping square patches (row-major, each patch
flattened row-major), so a transformer reads an image as T = (side / patch)^2 tokens
of dimension patch^2, the ViT recipe without the learned projection (the model adds it).
Shape legend: N samples, T tokens, P pixels per patch (patch^2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError

from .base import Experience

OPTION = "task.options"


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer option in [low, high], or a ConfigError naming ``task.options.<name>``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{OPTION}.{name}", f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{OPTION}.{name}", f"must be {bound}, got {value}")
    return value


def check_fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        raise ConfigError(f"{OPTION}.{name}", f"must be a number in ({low}, {high}), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ImageOptions:
    """Options shared by the class-incremental image tasks.

    ``patch``: side of a square patch; must divide the image side.
    ``classes_per_experience``: new classes per experience (the last one may get fewer).
    ``shuffle_classes``: permute the class order by the seed (else 0,1 | 2,3 | ...).
    """

    patch: int
    classes_per_experience: int = 2
    shuffle_classes: bool = False

    def validate(self, side: int, num_classes: int) -> None:
        check_int("patch", self.patch, 1, side)
        if side % self.patch:
            raise ConfigError(f"{OPTION}.patch", f"{self.patch} does not divide the image side {side}")
        check_int("classes_per_experience", self.classes_per_experience, 1, num_classes)
        if not isinstance(self.shuffle_classes, bool):
            raise ConfigError(f"{OPTION}.shuffle_classes", f"must be true or false, got {self.shuffle_classes!r}")

    def shape(self, side: int, num_classes: int) -> TaskShape:
        self.validate(side, num_classes)
        return TaskShape(seq_len=(side // self.patch) ** 2, num_classes=num_classes,
                         input_dim=self.patch ** 2, image_side=side)


def to_patches(images: Tensor, patch: int) -> Tensor:
    """(N, H, W) -> (N, T, P): non-overlapping patches in row-major order."""
    n, h, w = images.shape
    grid = images.reshape(n, h // patch, patch, w // patch, patch)   # (N, h', p, w', p)
    return grid.permute(0, 1, 3, 2, 4).reshape(n, (h // patch) * (w // patch), patch * patch)


def stratified_split(labels: Tensor, fractions: Sequence[float], generator: torch.Generator) -> list[Tensor]:
    """Indices of len(fractions) + 1 disjoint parts, each class cut in the same ratios.

    ``fractions`` are the sizes of parts 1.. (e.g. val, test); part 0 takes the rest.
    Each class is shuffled by ``generator`` before it is cut, and indices are sorted.
    """
    parts: list[list[Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        start = 0
        sizes = [round(f * len(idx)) for f in fractions]
        for k, size in enumerate(sizes, start=1):
            parts[k].append(idx[start:start + size])
            start += size
        parts[0].append(idx[start:])
    return [torch.sort(torch.cat(p)).values for p in parts]


def subsample_per_class(labels: Tensor, per_class: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of at most ``per_class`` random samples of each class (0 = all)."""
    if per_class <= 0:
        return torch.arange(len(labels))
    keep = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=generator)[:per_class]])
    return torch.sort(torch.cat(keep)).values


def class_groups(num_classes: int, per_experience: int, shuffle: bool, generator: torch.Generator) -> list[tuple[int, ...]]:
    """Consecutive groups of the class order: (0, 1), (2, 3), ... or a seeded permutation."""
    order = torch.randperm(num_classes, generator=generator).tolist() if shuffle else list(range(num_classes))
    return [tuple(order[i:i + per_experience]) for i in range(0, num_classes, per_experience)]


def class_incremental(splits: dict[str, tuple[Tensor, Tensor]], groups: list[tuple[int, ...]],
                      raw_test: Tensor | list | None = None) -> list[Experience]:
    """One experience per class group; labels stay global, so one head spans all classes.

    ``splits`` maps train/val/test to (x (N, T, P), y (N,)); ``raw_test`` holds the
    test inputs before preprocessing (a tensor, or a list such as strings), in the
    order of ``splits["test"]``.
    """
    experiences = []
    for index, group in enumerate(groups):
        data = {}
        for split, (x, y) in splits.items():
            mask = torch.isin(y, torch.tensor(group, dtype=y.dtype))
            data[split] = TensorDataset(x[mask], y[mask])
            if split == "test" and raw_test is not None:
                data["raw_test"] = (raw_test[mask] if isinstance(raw_test, Tensor)
                                    else [raw_test[i] for i in torch.nonzero(mask).flatten().tolist()])
        experiences.append(Experience(index=index, classes=tuple(sorted(group)), **data))
    return experiences
