"""The model's ends: how inputs become tokens, the stem that embeds them, the norm
placement and the head. Builders keyed by the kinds of ``search_space.kinds.model``.

Shape legend: B batch, T tokens, I token features, D model, C classes, S image side.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dynas.search_space.arch import TaskShape

from ..tasks.images import to_patches
from .registry import builder


# --- tokens: re-cut an image task's square patches ----------------------------------
def to_image(x: Tensor, side: int) -> Tensor:
    """(B, T, p*p) square patches, row-major -> (B, S, S): the inverse of the image
    tasks' patching."""
    b, t, width = x.shape
    p = math.isqrt(width)
    g = side // p
    return x.reshape(b, g, g, p, p).permute(0, 1, 3, 2, 4).reshape(b, side, side)


class Retokenise(nn.Module):
    """Re-cuts an image task's tokens: square patches of ``size`` (``size`` = S: the
    whole image as one token) or, with ``rows``, one token per pixel row."""

    def __init__(self, side: int, size: int = 0, rows: bool = False):
        super().__init__()
        self.side, self.size, self.rows = side, size, rows

    def forward(self, x: Tensor) -> Tensor:
        image = to_image(x, self.side)                      # (B, S, S)
        return image if self.rows else to_patches(image, self.size)


@builder("tokens", "task")
def build_task_tokens(shape: TaskShape) -> nn.Module:
    return nn.Identity()


@builder("tokens", "rows")
def build_rows(shape: TaskShape) -> nn.Module:
    return Retokenise(shape.image_side, rows=True)


@builder("tokens", "patch2")
def build_patch2(shape: TaskShape) -> nn.Module:
    return Retokenise(shape.image_side, size=2)


@builder("tokens", "patch4")
def build_patch4(shape: TaskShape) -> nn.Module:
    return Retokenise(shape.image_side, size=4)


@builder("tokens", "whole")
def build_whole(shape: TaskShape) -> nn.Module:
    return Retokenise(shape.image_side, size=shape.image_side)


# --- stem ------------------------------------------------------------------------------
def _embedding(input_dim: int, d_model: int, vocab_size: int) -> nn.Module:
    return nn.Linear(input_dim, d_model) if input_dim else nn.Embedding(vocab_size, d_model)


@builder("stem", "linear")
def build_linear_stem(input_dim: int, d_model: int, vocab_size: int) -> nn.Module:
    return _embedding(input_dim, d_model, vocab_size)


@builder("stem", "mlp")
def build_mlp_stem(input_dim: int, d_model: int, vocab_size: int) -> nn.Module:
    return nn.Sequential(_embedding(input_dim, d_model, vocab_size), nn.GELU(),
                         nn.Linear(d_model, d_model))


# --- norm placement: (post-norm blocks?, the final norm) -------------------------------
@builder("norm", "pre")
def build_pre_norm(d_model: int) -> tuple[bool, nn.Module]:
    return False, nn.LayerNorm(d_model)


@builder("norm", "post")
def build_post_norm(d_model: int) -> tuple[bool, nn.Module]:
    return True, nn.Identity()


# --- heads -----------------------------------------------------------------------------
class Head(nn.Linear):
    """A linear head (its parameters keep the names ``head.weight`` / ``head.bias`` of
    checkpoints saved before head kinds existed). ``prepend(h)`` adds the head's own
    tokens before the blocks (none here); ``forward(h)`` maps the final (B, T, D) to
    (B, C) by mean pooling, or to (B, T, C) for a per-token task."""

    def __init__(self, features: int, classes: int, per_token: bool = False):
        super().__init__(features, classes)
        self.per_token = per_token

    def prepend(self, h: Tensor) -> Tensor:
        return h

    def forward(self, h: Tensor) -> Tensor:
        return super().forward(h if self.per_token else h.mean(dim=1))


class ClsHead(Head):
    """A learned token prepended to the sequence; the head reads its final state."""

    def __init__(self, d_model: int, classes: int):
        super().__init__(d_model, classes)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.normal_(self.cls, std=0.02)

    def prepend(self, h: Tensor) -> Tensor:
        return torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)

    def forward(self, h: Tensor) -> Tensor:
        return nn.Linear.forward(self, h[:, 0])


class FlattenHead(Head):
    """All T x D final features into one linear layer (position-aware, like an MLP's
    last layer over the whole input)."""

    def __init__(self, d_model: int, tokens: int, classes: int):
        super().__init__(tokens * d_model, classes)

    def forward(self, h: Tensor) -> Tensor:
        return nn.Linear.forward(self, h.flatten(1))


@builder("head", "mean")
def build_mean_head(d_model: int, tokens: int, classes: int, per_token: bool) -> Head:
    return Head(d_model, classes, per_token)


@builder("head", "cls")
def build_cls_head(d_model: int, tokens: int, classes: int, per_token: bool) -> Head:
    return ClsHead(d_model, classes)


@builder("head", "flatten")
def build_flatten_head(d_model: int, tokens: int, classes: int, per_token: bool) -> Head:
    return FlattenHead(d_model, tokens, classes)
