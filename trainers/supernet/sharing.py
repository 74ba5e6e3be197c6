"""Sharing keys and slices: which shared tensor each parameter of a candidate takes, and
how (Once-for-All and AutoFormer style).

``SuperNet`` (``supernet.net``) holds one tensor per *sharing key* at the widest shape
any candidate of the space needs; a candidate's every parameter is the leading slice
of its key's tensor (``d_model``, hidden widths, expert counts, per-head spans shrink
by slicing; depth is the first L layers). Keys keep apart what must not be shared and
share what may:

- per layer and per kind: ``layers.0.attn[full].proj.qkv.weight`` and
  ``layers.0.attn[sliding_window]....`` are different tensors; two options of one kind
  (``heads: [2, 4]``, ``window: [4, 8]``) share one. A MoE is keyed by its expert kind
  (``ffn[moe/dense]``); its router kinds share the gate.
- the block's own norms per layer (``layers.0.norm_ffn``), the ends per kind that shapes
  them: the stem by (tokens, stem), positions by (tokens, head), the head by
  (head, tokens), the final norm once.

Two layouts are not plain leading blocks: a fused qkv projection is sliced per q, k
and v (``(3, D, D)[:, :d, :d]``), and a ``flatten`` head per token (``(C, T, D)[..., :d]``).
``spanning_archs`` finds the few architectures that together hold every key at its
widest, which is what the supernet is initialised from.

Which kinds may be shared: ``search_space.sharing`` (``KindSpec.slices``). A
parameter wider than its key's tensor (a kind that said it slices but does not) is a
``ConfigError`` naming it, never a silent truncation.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

from dynas.search_space.arch import ArchConfig, LayerConfig, TaskShape
from dynas.search_space.errors import ConfigError
from dynas.search_space.kinds import REGISTRIES
from dynas.search_space.space import ArchSpace, Option

from ..model import build_model


# --- keys and slices ----------------------------------------------------------------
def ffn_tag(ffn) -> str:
    """What keys an FFN's weights: its kind, and a MoE's expert kind."""
    return f"moe/{ffn.expert}" if ffn.kind == "moe" else ffn.kind


def share_key(name: str, arch: ArchConfig) -> str:
    """The shared tensor a parameter (or buffer) ``name`` of ``arch``'s model slices."""
    head, _, rest = name.partition(".")
    if head == "layers":
        index, part, tail = (rest.split(".", 2) + ["", ""])[:3]
        layer = arch.layers[int(index)]
        tag = {"attn": lambda: layer.attention.kind, "ffn": lambda: ffn_tag(layer.ffn)}.get(part)
        return f"layers.{index}.{part}[{tag()}].{tail}" if tag else name
    if head == "embed":
        return f"embed[{arch.tokens},{arch.stem}].{rest}"
    if head == "pos":
        return f"pos[{arch.tokens},{arch.head}]"
    if head == "head":
        return f"head[{arch.head},{arch.tokens}].{rest}"
    return name


def layout(name: str, arch: ArchConfig, shape: tuple[int, ...]) -> tuple[str, int]:
    """How parameter ``name`` (of ``shape``) is sliced: ``("chunks", 3)`` for a fused
    q/k/v projection, ``("tokens", T)`` for a flatten head's weight, else plainly."""
    if name.endswith("proj.qkv.weight") or name.endswith("proj.qkv.bias"):
        return "chunks", 3
    if name == "head.weight" and arch.head == "flatten":
        return "tokens", shape[1] // arch.d_model
    return "", 0


def take(full: Tensor, shape: tuple[int, ...], layout: tuple[str, int] = ("", 0), name: str = "") -> Tensor:
    """The leading ``shape`` slice of ``full`` in ``layout`` (a differentiable view or copy)."""
    kind, n = layout
    if kind == "chunks":                     # (3A, ...) as (3, A, ...): each of q, k, v sliced
        inner = (shape[0] // n,) + tuple(shape[1:])
        return _lead(full.reshape(n, full.shape[0] // n, *full.shape[1:]), (n,) + inner, name).reshape(shape)
    if kind == "tokens":                     # (C, T*D) as (C, T, D): each token's features sliced
        c, width = full.shape
        return _lead(full.reshape(c, n, width // n), (shape[0], n, shape[1] // n), name).reshape(shape)
    return _lead(full, shape, name)


def _lead(full: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    """The leading block; wider than ``full`` is a kind that does not slice as declared."""
    if len(shape) != full.dim() or any(s > f for s, f in zip(shape, full.shape)):
        raise ConfigError(name or "supernet", f"needs shape {tuple(shape)}, wider than the supernet's "
                          f"{tuple(full.shape)}: its kind does not slice as it declares")
    return full[tuple(slice(0, s) for s in shape)]


def named_tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, bool, Tensor]]:
    """(name, owning module, attribute, is_parameter, tensor) of every parameter and buffer."""
    for mod_name, module in model.named_modules():
        for attr, t in list(module._parameters.items()):
            if t is not None:
                yield (f"{mod_name}.{attr}" if mod_name else attr), module, attr, True, t
        for attr, t in list(module._buffers.items()):
            if t is not None:
                yield (f"{mod_name}.{attr}" if mod_name else attr), module, attr, False, t


def inherit(shared: Mapping[str, Tensor], arch: ArchConfig, shape: TaskShape) -> nn.Module:
    """``arch``'s model holding its slices of ``shared`` (copies: a model of its own)."""
    model = build_model(arch, shape)
    with torch.no_grad():
        for name, module, attr, is_param, t in named_tensors(model):
            if not is_param and attr in module._non_persistent_buffers_set:
                continue                     # running state (a MoE's pending load): starts at zero
            key = share_key(name, arch)
            if key not in shared:
                raise ConfigError(name, f"the supernet has no weights for {key} (a kind or option "
                                  "this space did not declare)")
            t.copy_(take(shared[key], tuple(t.shape), layout(name, arch, tuple(t.shape)), name))
    return model


# --- the widest architectures a space holds ------------------------------------------
def _numeric(v: Any) -> bool:
    """A width-like value (the widest is its maximum); a bool is a categorical choice."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _widest_configs(part: str, options: tuple[Option, ...]) -> list:
    """One config per sharing tag of ``part``: every numeric field at its largest
    declared value over the options of that tag (the widest shapes), the categorical
    ones as first declared."""
    registry = REGISTRIES[part]
    merged: dict[str, tuple[Any, dict]] = {}
    for opt in options:
        spec = registry.get(opt.kind)
        cats = [(f, vals) for f, vals in opt.values if not all(_numeric(v) for v in vals)]
        for combo in itertools.product(*(vals for _, vals in cats)):
            values = dict(zip((f for f, _ in cats), combo))
            values.update({f: max(vals) for f, vals in opt.values if f not in values})
            cfg = spec.make(values)
            tag = cfg.kind if part == "attention" else ffn_tag(cfg)
            if tag in merged:
                _, old = merged[tag]
                for f, v in values.items():
                    if _numeric(v):
                        old[f] = max(old[f], v)
            else:
                merged[tag] = (spec, values)
    out = []
    for tag, (spec, values) in merged.items():
        for f in spec.field_names:             # a conditional field off: its default
            if not spec.active(f, values):
                values[f] = spec.get_field(f).default
        out.append(spec.make(values))
    return out


def spanning_archs(space: ArchSpace, shape: TaskShape) -> list[ArchConfig]:
    """Architectures that together hold every sharing key at its widest: the layer
    kinds cycled over the deepest model, and every combination of the model kinds."""
    attention = _widest_configs("attention", space.attention)
    ffn = _widest_configs("ffn", space.ffn)
    d, depth = max(space.d_model), max(space.layers)
    model = dict(space.model)
    ends = [dict(zip(model, combo)) for combo in itertools.product(*model.values())] or [{}]
    mixer = next((a for a in attention if a.kind != "identity"), attention[0])
    wanted = [[LayerConfig(attention[k % len(attention)], ffn[k % len(ffn)])] * depth
              for k in range(max(len(attention), len(ffn)))]
    archs = []
    for layers in wanted:                    # the layer kinds, under the first ends that build
        for kinds in ends:
            arch = ArchConfig(d, tuple(layers), **kinds)
            if _builds(arch, shape):
                archs.append(arch)
                break
    for kinds in ends:                       # every ends combination, under a mixing layer
        arch = ArchConfig(d, (LayerConfig(mixer, ffn[0]),) * depth, **kinds)
        if _builds(arch, shape):
            archs.append(arch)
    if not archs:
        raise ConfigError("space", "no architecture of this space builds for the task; "
                          "the supernet has nothing to hold")
    return archs


def _builds(arch: ArchConfig, shape: TaskShape) -> bool:
    """Whether ``arch`` builds for ``shape`` (on meta: no memory); some ends combinations do not."""
    try:
        with torch.device("meta"):
            build_model(arch, shape)
        return True
    except (ConfigError, ValueError):
        return False
