"""Split-Digits: scikit-learn's 8x8 handwritten digits as a class-incremental stream.

The dataset ships inside scikit-learn (1797 images, no download), so this is the task
for CI and quick experiments: 5 experiences of 2 new classes each by default.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError

from .base import Task, register_task
from .images import OPTION, ImageOptions, check_fraction, class_groups, class_incremental, stratified_split
from .preprocessing import ImagePatches

SIDE, NUM_CLASSES, MAX_PIXEL = 8, 10, 16.0


@dataclass(frozen=True)
class DigitsOptions(ImageOptions):
    """Options of ``split_digits``.

    ``patch`` 2 gives 16 tokens of dimension 4 (4: 4 tokens of 16; 1: 64 tokens of 1).
    ``val_fraction`` / ``test_fraction``: stratified shares of all 1797 images; the
    train split gets the rest (60/20/20 by default), drawn by the seed.
    """

    patch: int = 2
    val_fraction: float = 0.2
    test_fraction: float = 0.2

    def validate(self, side: int = SIDE, num_classes: int = NUM_CLASSES) -> None:
        super().validate(side, num_classes)
        check_fraction("val_fraction", self.val_fraction)
        check_fraction("test_fraction", self.test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(f"{OPTION}.test_fraction", "val_fraction + test_fraction must be < 1")


def digits_shape(**options) -> TaskShape:
    return DigitsOptions(**options).shape(SIDE, NUM_CLASSES)


@register_task("split_digits", shape=digits_shape, options=DigitsOptions,
               description="sklearn 8x8 digits, 5 experiences x 2 classes, class-incremental")
def split_digits(seed: int = 0, **options) -> Task:
    """Build the stream; the same seed gives the same splits and class order."""
    from sklearn.datasets import load_digits  # lazy: only this task needs scikit-learn

    opts = DigitsOptions(**options)
    shape = opts.shape(SIDE, NUM_CLASSES)
    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float32)              # (N, 8, 8) in [0, 16]
    labels = torch.as_tensor(data.target, dtype=torch.long)                  # (N,)
    generator = torch.Generator().manual_seed(seed)
    train, val, test = stratified_split(labels, (opts.val_fraction, opts.test_fraction), generator)
    prep = ImagePatches.fit(images[train], patch=opts.patch, scale=MAX_PIXEL)
    splits = {name: (prep(images[idx]), labels[idx]) for name, idx in (("train", train), ("val", val), ("test", test))}
    groups = class_groups(NUM_CLASSES, opts.classes_per_experience, opts.shuffle_classes, generator)
    experiences = class_incremental(splits, groups, raw_test=images[test])
    return Task("split_digits", shape, experiences, scenario="class_il", preprocessing=prep)
