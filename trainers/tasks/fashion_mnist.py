"""Split-Fashion-MNIST: the 28x28 Zalando images as a class-incremental stream.

Reads the four standard IDX files (gzipped or raw) from a local directory; nothing is
ever downloaded. Debian packages them (``dataset-fashion-mnist``) under
/usr/share/datasets/fashion-mnist; ``task.options.root`` or $DYNAS_FASHION_MNIST
points elsewhere.
"""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError, DynasError

from .base import Task, register_task
from .images import (OPTION, ImageOptions, check_fraction, check_int, class_groups,
                     class_incremental, stratified_split, subsample_per_class)
from .preprocessing import ImagePatches

SIDE, NUM_CLASSES, MAX_PIXEL = 28, 10, 255.0
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ENV_ROOT = "DYNAS_FASHION_MNIST"
INSTALL_HINT = ("install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) "
                "or set task.options.root")

# IDX type codes (http://yann.lecun.com/exdb/mnist/): element type, big-endian.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> Tensor:
    """Parse one IDX file (optionally gzipped) into a tensor of its declared shape.

    Header: two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension; the data follows, big-endian, row-major. A malformed file
    raises DynasError naming it (it is user input, not a bug).
    """
    path = Path(path)
    if not path.is_file():
        raise DynasError(f"{path}: no such IDX file")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DynasError(f"{path}: corrupt gzip stream ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DynasError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise DynasError(f"{path}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DynasError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DynasError(f"{path}: IDX data has {len(raw) - header} bytes, dims {dims} need {expected}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


def resolve_root(root: str | None) -> Path:
    """Explicit option, else $DYNAS_FASHION_MNIST, else the Debian location."""
    return Path(root or os.environ.get(ENV_ROOT) or DEFAULT_ROOT).expanduser()


def idx_path(root: Path, stem: str) -> Path:
    """The file for ``stem`` (e.g. train-images-idx3-ubyte), gzipped or raw."""
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise ConfigError(f"{OPTION}.root", f"Fashion-MNIST file {root / (stem + '.gz')} not found; {INSTALL_HINT}")


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> Tensor:
    return read_idx(path)


def load_split(root: Path, split: str) -> tuple[Tensor, Tensor]:
    """(images (N, 28, 28) uint8, labels (N,) long) of ``train`` or ``t10k``; cached per process."""
    out = []
    for stem in (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"):
        path = idx_path(root, stem)
        out.append(_load_cached(str(path), path.stat().st_mtime_ns))
    images, labels = out
    if images.shape[1:] != (SIDE, SIDE) or images.shape[0] != labels.shape[0]:
        raise DynasError(f"{root}: {split} images {tuple(images.shape)} do not match labels {tuple(labels.shape)}")
    return images, labels.long()


@dataclass(frozen=True)
class FashionOptions(ImageOptions):
    """Options of ``split_fashion_mnist``.

    ``patch`` 7 gives 16 tokens of dimension 49 (4: 49 tokens of 16).
    ``train_per_class``: random training images kept per class (0 = all 6000), for speed;
    ``val_fraction`` of them (stratified) form the val split.
    ``test_per_class``: random test images kept per class (0 = all 1000).
    """

    patch: int = 7
    root: str | None = None
    train_per_class: int = 1000
    test_per_class: int = 500
    val_fraction: float = 0.1

    def validate(self, side: int = SIDE, num_classes: int = NUM_CLASSES) -> None:
        super().validate(side, num_classes)
        check_int("train_per_class", self.train_per_class, 0)
        check_int("test_per_class", self.test_per_class, 0)
        check_fraction("val_fraction", self.val_fraction)
        if self.root is not None and not isinstance(self.root, (str, os.PathLike)):
            raise ConfigError(f"{OPTION}.root", f"must be a directory path, got {self.root!r}")


def fashion_shape(**options) -> TaskShape:
    return FashionOptions(**options).shape(SIDE, NUM_CLASSES)


@register_task("split_fashion_mnist", shape=fashion_shape, options=FashionOptions,
               description="Fashion-MNIST from local IDX files, 5 experiences x 2 classes, class-incremental")
def split_fashion_mnist(seed: int = 0, **options) -> Task:
    """Build the stream; the seed draws the subsamples, the val split and the class order."""
    opts = FashionOptions(**options)
    shape = opts.shape(SIDE, NUM_CLASSES)
    root = resolve_root(opts.root)
    train_images, train_labels = load_split(root, "train")
    test_images, test_labels = load_split(root, "t10k")
    generator = torch.Generator().manual_seed(seed)
    keep = subsample_per_class(train_labels, opts.train_per_class, generator)
    train_images, train_labels = train_images[keep], train_labels[keep]
    train, val = stratified_split(train_labels, (opts.val_fraction,), generator)
    keep_test = subsample_per_class(test_labels, opts.test_per_class, generator)

    prep = ImagePatches.fit(train_images[train], patch=opts.patch, scale=MAX_PIXEL)   # uint8 pixels in
    raw_test = test_images[keep_test]
    splits = {"train": (prep(train_images[train]), train_labels[train]),
              "val": (prep(train_images[val]), train_labels[val]),
              "test": (prep(raw_test), test_labels[keep_test])}
    groups = class_groups(NUM_CLASSES, opts.classes_per_experience, opts.shuffle_classes, generator)
    experiences = class_incremental(splits, groups, raw_test=raw_test)
    return Task("split_fashion_mnist", shape, experiences, scenario="class_il", preprocessing=prep)
