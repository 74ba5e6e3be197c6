"""Preprocessing state: what turns a task's raw inputs into model inputs, kept as JSON.

A task fits its preprocessing on its training split (never on val or test) and builds
every split through it; the same object, saved with the weights, lets a ``Predictor``
apply exactly that transformation to new raw inputs. Adding one for a new task is one
class with ``kind``, ``state_dict``, ``from_state`` and ``__call__`` registered with
``@register_preprocessing``; ``Task.preprocessing`` holds the task's instance.

Built in: ``image_patches`` (pixel scale, patching, one standardisation mean/std),
``tokens`` (token ids checked against the vocabulary size), ``vocabulary`` (strings to
ids through a vocabulary built from the training texts; for text tasks).
Shape legend: N samples, H/W image side, T tokens, P pixels per patch.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Iterable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from dynas.search_space.errors import DynasError

from .images import to_patches


class Preprocessing(Protocol):
    """Raw inputs -> model inputs; its state is plain JSON."""

    kind: ClassVar[str]

    def state_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Preprocessing": ...

    def __call__(self, raw: Any) -> Tensor: ...


PREPROCESSING: dict[str, type] = {}


def register_preprocessing(cls: type) -> type:
    """Class decorator: make ``cls.kind`` loadable by ``preprocessing_from_json``."""
    PREPROCESSING[cls.kind] = cls
    return cls


def preprocessing_to_json(prep: Preprocessing) -> dict[str, Any]:
    return {"kind": prep.kind, "state": prep.state_dict()}


def preprocessing_from_json(data: Any, source: str = "preprocessing") -> Preprocessing:
    """Rebuild a saved preprocessing; a foreign or broken state is one DynasError line."""
    if not isinstance(data, dict) or "kind" not in data or not isinstance(data.get("state"), dict):
        raise DynasError(f"{source}: expected {{kind, state}}, got {type(data).__name__}")
    kind = data["kind"]
    if kind not in PREPROCESSING:
        raise DynasError(f"{source}: unknown preprocessing kind {kind!r}; known: {', '.join(sorted(PREPROCESSING))}")
    try:
        return PREPROCESSING[kind].from_state(data["state"])
    except (TypeError, ValueError, KeyError) as err:
        raise DynasError(f"{source}: bad {kind} state ({err})") from None


class _DataclassState:
    """state_dict / from_state for a frozen dataclass of JSON fields."""

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        unknown = set(state) - names
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        return cls(**state)


def as_tensor(raw: Any, dtype: torch.dtype) -> Tensor:
    """Raw inputs (tensor, numpy array, nested lists) as a tensor, or one DynasError line."""
    try:
        return torch.as_tensor(raw if isinstance(raw, Tensor) else np.asarray(raw), dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DynasError(f"inputs: cannot read as a {dtype} array ({err})") from None


@register_preprocessing
@dataclass(frozen=True)
class ImagePatches(_DataclassState):
    """Square images of raw pixel values -> standardised patch tokens.

    ``x / scale`` -> non-overlapping ``patch`` x ``patch`` patches, row-major -> ``(x -
    mean) / std``; ``mean`` and ``std`` are one scalar each over all training pixels
    (per-pixel statistics blow up on pixels constant in training, like digit borders).
    """

    kind: ClassVar[str] = "image_patches"
    side: int
    patch: int
    scale: float
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.patch < 1 or self.side % self.patch or not self.std > 0 or not math.isfinite(self.mean):
            raise ValueError(f"side={self.side}, patch={self.patch}, std={self.std}, mean={self.mean}")

    @classmethod
    def fit(cls, train_images: Tensor, *, patch: int, scale: float) -> "ImagePatches":
        """Statistics of the training images (N, H, W) only: no val/test leakage."""
        unscaled = cls(side=train_images.shape[-1], patch=patch, scale=scale)
        tokens = unscaled.patches(train_images)
        return cls(side=unscaled.side, patch=patch, scale=scale, mean=float(tokens.mean()),
                   std=float(tokens.std().clamp_min(1e-6)))

    def patches(self, images: Tensor) -> Tensor:
        """(N, H, W) -> (N, T, P): scaled and patched, not standardised."""
        return to_patches(images.float() / self.scale, self.patch)

    def __call__(self, raw: Any) -> Tensor:
        images = as_tensor(raw, torch.float32)
        given = tuple(images.shape)               # an error names the shape the caller passed
        if images.dim() == 2:
            images = images.unsqueeze(0)
        if images.dim() != 3 or tuple(images.shape[1:]) != (self.side, self.side):
            raise DynasError(f"inputs: expected images of shape (N, {self.side}, {self.side}) or "
                             f"({self.side}, {self.side}), got {given}")
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        return (self.patches(images) - mean) / std


@register_preprocessing
@dataclass(frozen=True)
class Tokens(_DataclassState):
    """Token ids as they are, checked: (N, T) or (T,) integers in [0, vocab_size)."""

    kind: ClassVar[str] = "tokens"
    vocab_size: int
    seq_len: int

    def __call__(self, raw: Any) -> Tensor:
        ids = as_tensor(raw, torch.long)
        given = tuple(ids.shape)
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2 or ids.shape[1] > self.seq_len:
            raise DynasError(f"inputs: expected token ids of shape (N, T <= {self.seq_len}) or "
                             f"(T <= {self.seq_len},), got {given}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise DynasError(f"inputs: token ids must be in [0, {self.vocab_size}), "
                             f"got [{int(ids.min())}, {int(ids.max())}]")
        return ids


@register_preprocessing
@dataclass(frozen=True)
class Vocabulary(_DataclassState):
    """Strings -> (N, seq_len) ids: split into characters or whitespace words, looked up
    in ``tokens`` (id = position; 0 is padding, 1 unknown), cut or padded to seq_len."""

    kind: ClassVar[str] = "vocabulary"
    tokens: tuple[str, ...]
    seq_len: int
    split: str = "chars"              # chars | whitespace
    PAD: ClassVar[int] = 0
    UNK: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if self.split not in ("chars", "whitespace") or self.tokens[:2] != ("<pad>", "<unk>"):
            raise ValueError(f"split={self.split!r}, first tokens {self.tokens[:2]}")

    @classmethod
    def fit(cls, train_texts: Iterable[str], *, seq_len: int, split: str = "chars",
            max_size: int = 0) -> "Vocabulary":
        """The training texts' tokens, most frequent first (ties by first appearance)."""
        counts = Counter(tok for text in train_texts for tok in cls._split(text, split))
        ranked = [tok for tok, _ in counts.most_common(max_size - 2 if max_size > 2 else None)]
        return cls(tokens=("<pad>", "<unk>", *ranked), seq_len=seq_len, split=split)

    @staticmethod
    def _split(text: str, split: str) -> Sequence[str]:
        return list(text) if split == "chars" else text.split()

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __call__(self, raw: Any) -> Tensor:
        texts = [raw] if isinstance(raw, str) else list(raw)
        if not all(isinstance(t, str) for t in texts):
            raise DynasError("inputs: expected a string or a list of strings")
        index = {tok: i for i, tok in enumerate(self.tokens)}
        ids = torch.full((len(texts), self.seq_len), self.PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            toks = [index.get(t, self.UNK) for t in self._split(text, self.split)][: self.seq_len]
            ids[row, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        return ids


@register_preprocessing
@dataclass(frozen=True)
class Features(_DataclassState):
    """Tabular rows (N, F) of raw measurements -> (N, F, 1) tokens, one per feature, each
    standardised by its own training mean and std (features differ in scale by orders
    of magnitude, unlike pixels)."""

    kind: ClassVar[str] = "features"
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != len(self.std) or not all(s > 0 for s in self.std):
            raise ValueError(f"{len(self.mean)} means, {len(self.std)} stds, min std {min(self.std, default=0)}")

    @classmethod
    def fit(cls, train_rows: Tensor) -> "Features":
        """Per-feature statistics of the training rows (N, F) only."""
        rows = train_rows.double()
        return cls(mean=tuple(rows.mean(0).tolist()), std=tuple(rows.std(0).clamp_min(1e-6).tolist()))

    def __call__(self, raw: Any) -> Tensor:
        rows = as_tensor(raw, torch.float32)
        given = tuple(rows.shape)
        if rows.dim() == 1:
            rows = rows.unsqueeze(0)
        if rows.dim() != 2 or rows.shape[1] != len(self.mean):
            raise DynasError(f"inputs: expected rows of shape (N, {len(self.mean)}) or ({len(self.mean)},), "
                             f"got {given}")
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        return ((rows - mean) / std).unsqueeze(-1)
