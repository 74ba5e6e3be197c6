"""The model-level kinds: how inputs become tokens, the stem, the norm placement and
the head. One spec each, like the layer kinds; ``trainers`` builds them by name.

These are whole-model decisions (one per architecture, not per layer), held by
``ArchConfig.tokens`` / ``stem`` / ``norm`` / ``head``; each default is the model
dynas always built, so an architecture saved before these existed keeps its arch_id.
Cost signatures (one sample):

- ``tokens``: ``cost(shape) -> (seq_len, input_dim)`` the blocks' stem receives;
  raises ``ConfigError`` when the task cannot be tokenised that way. Image kinds
  re-cut the task's square patches of a ``shape.image_side`` image: ``rows`` (one
  token per pixel row), ``patch2`` / ``patch4`` (square patches), ``whole`` (the
  image as one token, an MLP's view of it). ``task`` keeps the task's tokens.
- ``stem``: ``cost(input_dim, d_model, seq_len, vocab_size) -> Part``: ``linear`` (a
  linear layer, or the embedding table of a token task), ``mlp`` (that, GELU, then a
  d x d linear).
- ``norm``: ``cost(d_model) -> Part`` of the final norm. ``pre``: x + f(LN(x)) and a
  final LN; ``post``: LN(x + f(x)), its output already normalised (no final LN).
- ``head``: ``cost(d_model, seq_len, classes, per_token) -> (block tokens, Part)``:
  ``mean`` (mean-pool, or every token of a per-token task), ``cls`` (a learned token
  prepended; the head reads it), ``flatten`` (all T x D features into one linear).
- ``positions``: ``cost(d_model, seq_len) -> Part`` (seq_len: the blocks' tokens):
  ``learned`` (a T x D table added to the embeddings: T*D parameters, T*D FLOPs),
  ``rope`` (rotary: q and k rotated by their position in every attention layer, so
  scores depend on the query-key offset; Su et al. 2021), ``alibi`` (a per-head
  linear bias -m_h |i - j| on the softmax scores; Press et al. 2022), ``none``.
  The relative kinds have no parameters and no matmul FLOPs (their elementwise work is
  not counted, as for LayerNorm), so their cost is exactly zero.
"""
from __future__ import annotations

from ..arch import TaskShape
from ..errors import ConfigError
from .base import KindSpec, Part, layer_norm, linear
from .registries import register_model_kind


def _image_grid(shape: TaskShape, kind: str) -> int:
    """The image side of an image task (whose tokens are square patches), or an error."""
    if not shape.image_side or not shape.input_dim:
        raise ConfigError("tokens", f"{kind} tokens need an image task; this task's tokens are not image patches")
    return shape.image_side


def _patches(size: int):
    def geometry(shape: TaskShape) -> tuple[int, int]:
        side = _image_grid(shape, f"patch{size}")
        if side % size:
            raise ConfigError("tokens", f"patch{size} does not divide the image side {side}")
        return (side // size) ** 2, size * size
    return geometry


def _rows(shape: TaskShape) -> tuple[int, int]:
    side = _image_grid(shape, "rows")
    return side, side


def _whole(shape: TaskShape) -> tuple[int, int]:
    side = _image_grid(shape, "whole")
    return 1, side * side


def _stem_cost(mlp: bool):
    def cost(input_dim: int, d: int, t: int, vocab: int) -> Part:
        embed = linear(input_dim, d, t) if input_dim else Part(vocab * d, vocab * d)
        return embed + linear(d, d, t) if mlp else embed
    return cost


def _no_cls_per_token(kind: str, per_token: bool) -> None:
    if per_token:
        raise ConfigError("head", f"{kind} head needs one label per sample; this task labels every token")


def _mean_head(d: int, t: int, c: int, per_token: bool) -> tuple[int, Part]:
    return t, linear(d, c, t if per_token else 1)


def _cls_head(d: int, t: int, c: int, per_token: bool) -> tuple[int, Part]:
    _no_cls_per_token("cls", per_token)
    return t + 1, Part(d, d) + linear(d, c, 1)


def _flatten_head(d: int, t: int, c: int, per_token: bool) -> tuple[int, Part]:
    _no_cls_per_token("flatten", per_token)
    return t, linear(t * d, c, 1)


def _simple(family: str, name: str, cost, label: str = "") -> None:
    register_model_kind(family, KindSpec(name, lambda v, n=name: n, cost=cost,
                                         label=lambda _, n=label or name: n,
                                         short=lambda _, n=label or name: n, slices=True))


def _register_builtins() -> None:
    _simple("tokens", "task", lambda s: (s.seq_len, s.input_dim))
    _simple("tokens", "rows", _rows)
    _simple("tokens", "patch2", _patches(2), "p2")
    _simple("tokens", "patch4", _patches(4), "p4")
    _simple("tokens", "whole", _whole)
    _simple("stem", "linear", _stem_cost(False))
    _simple("stem", "mlp", _stem_cost(True), "mlp-stem")
    _simple("norm", "pre", layer_norm)
    _simple("norm", "post", lambda d: Part(), "post-norm")
    _simple("head", "mean", _mean_head)
    _simple("head", "cls", _cls_head)
    _simple("head", "flatten", _flatten_head, "flat")
    _simple("positions", "learned", lambda d, t: Part(t * d, t * d, floats=t * d))
    _simple("positions", "rope", lambda d, t: Part())
    _simple("positions", "alibi", lambda d, t: Part())
    _simple("positions", "none", lambda d, t: Part(), "nopos")


_register_builtins()
