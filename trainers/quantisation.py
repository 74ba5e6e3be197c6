"""int8 for dynas models on torchao: what is quantised, how it runs, how it is stored.

Shape legend: M rows (tokens), K input features, N output features, E experts.

Two treatments, chosen by measurement (``benchmarks/compress_int8.py``, numbers in
``docs/benchmarks.md``):

- **Plain ``nn.Linear``** (attention projections, dense and shared-expert FFNs, routers,
  stems) become ``Int8Linear``: the weight int8 per output channel, the activation
  quantised per token at run time, the product on int8 units (``torch._int_mm``: AMX /
  VNNI through oneDNN on CPUs that have them; torchao's ``int_scaled_matmul`` on CPU is
  the same call plus one more pass for the scales).
  torchao's own ``Int8DynamicActivationInt8WeightConfig`` computes the same thing but
  in eager mode its generic activation quantiser costs more than the matmul saves
  (0.5x fp32 here); under ``torch.compile`` it is fast, but a compile takes minutes per
  model, which a loaded model folder cannot ask of its user.
- **Heads and stacked expert weights** are stored int8 (weight-only, per output channel)
  and run float: a head is one (B, D) x (D, C) product and each expert a small product
  over the few tokens routed to it, where quantising the activation costs more than
  int8 units save. They are dequantised once when the model is built, so they cost
  float time and a quarter of the file.

The seam for modules holding stacked weights (an MoE expert group, batched or looped):
the class attribute ``EXPERT_WEIGHTS`` naming each stacked (E, in, out) weight parameter
(its matmul reduces over dim 1, the input features). ``quantise`` replaces each
such parameter with two buffers, ``<name>_int8`` and ``<name>_scale``, and sets the
dequantised float tensor as a plain attribute of the same name, so the module's own
forward (whatever its form) reads ``self.<name>`` as before.

Numerics are torchao's symmetric affine primitives (``choose_qparams_affine``,
``quantize_affine``, ``dequantize_affine``) with the range [-127, 127]; quantisation-aware
training fakes the same schemes with torchao's QAT API (``prepare_qat`` / ``convert_qat``).
"""
from __future__ import annotations

import copy
import functools
import logging
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INT8_FORMAT = "torchao-int8-v1"     # compress.json "int8_format": how the int8 tensors are laid out
QMIN, QMAX = -127, 127              # symmetric, so zero is exactly zero and no zero point is stored


@contextmanager
def _quiet_import() -> Iterator[None]:
    """torchao's import logs two lines that are not ours to fix: it tries its CUDA-only
    kernels on a CPU build, and torch calls its registration of an Enum deprecated."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@functools.cache
def torchao() -> Any:
    """The torchao modules used here, imported once, lazily (torchao is heavy)."""
    with _quiet_import():
        import torchao.quantization.quant_primitives as primitives
        import torchao.quantization.qat as qat
        from torchao.quantization import quantize_
    return type("torchao", (), {"primitives": primitives, "qat": qat,
                                "quantize_": staticmethod(quantize_)})


# --- numerics -------------------------------------------------------------------------
def quantise_weight(w: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """(int8 values, float32 scales) of ``w``, one scale per slice along ``dim`` (the
    dimension its matmul reduces over); the scales keep ``w``'s rank (size 1 at ``dim``)."""
    p = torchao().primitives
    block = [1] * w.ndim
    block[dim] = w.shape[dim]
    w = w.detach().float()
    scale, zero = p.choose_qparams_affine(w, p.MappingType.SYMMETRIC, block, torch.int8, QMIN, QMAX,
                                          scale_dtype=torch.float32, keepdim=True)
    return p.quantize_affine(w, block, scale, zero, torch.int8, QMIN, QMAX), scale


def dequantise_weight(q: Tensor, scale: Tensor) -> Tensor:
    return q.float() * scale        # symmetric: dequantize_affine with zero point 0


class Int8Linear(nn.Module):
    """``nn.Linear`` on int8 units: y = (x_q @ W_q^T) * s_x * s_w + b, with x quantised
    per token (row) at run time and W per output channel once."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, 1))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "Int8Linear":
        out = cls(linear.in_features, linear.out_features, linear.bias is not None)
        out.weight_int8, out.weight_scale = quantise_weight(linear.weight, dim=1)
        if linear.bias is not None:
            out.bias.data.copy_(linear.bias.detach())
        return out

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":      # _int_mm's CUDA kernel has shape rules; int8 here is for CPU
            return F.linear(x, dequantise_weight(self.weight_int8, self.weight_scale).to(x.dtype), self.bias)
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)                                   # (M, K)
        # abs().amax: aminmax and vector_norm(inf) reduce a short row 50-100x slower here
        x_scale = x.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(QMAX)   # (M, 1)
        x_q = (x / x_scale).round_().clamp_(QMIN, QMAX).to(torch.int8)
        # torchao's int_scaled_matmul is this _int_mm then a row-scale multiply into a new
        # tensor; here the row scale, the column scale and the bias are applied in place
        y = torch._int_mm(x_q, self.weight_int8.t()).float().mul_(x_scale)   # (M, N)
        y.mul_(self.weight_scale.view(1, -1))
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


# --- the model ------------------------------------------------------------------------
def stored_weights(module: nn.Module) -> dict[str, int]:
    """The weight-only int8 parameters of ``module``: name -> the dim its matmul reduces
    over. Subclasses of ``nn.Linear`` (heads) hold ``weight`` (N, K); stacked expert
    groups name theirs in ``EXPERT_WEIGHTS``, each (E, in, out): reduced over dim 1."""
    if isinstance(module, nn.Linear) and type(module) is not nn.Linear:
        return {"weight": 1}
    return {name: 1 for name in getattr(type(module), "EXPERT_WEIGHTS", ())}


def _store(module: nn.Module, name: str, dim: int) -> None:
    """Parameter ``name`` -> buffers ``name_int8`` / ``name_scale`` + its dequantised
    float as a plain attribute (read by the module's forward, never saved)."""
    q, scale = quantise_weight(getattr(module, name), dim)
    del module._parameters[name]
    module.register_buffer(f"{name}_int8", q)
    module.register_buffer(f"{name}_scale", scale)
    setattr(module, name, dequantise_weight(q, scale))


def refresh(model: nn.Module) -> nn.Module:
    """Recompute the float weights of stored-int8 parameters from their buffers (after
    ``load_state_dict`` filled the buffers)."""
    for module in model.modules():
        for name in stored_weights(module):
            if f"{name}_int8" in module._buffers:
                setattr(module, name, dequantise_weight(module._buffers[f"{name}_int8"],
                                                        module._buffers[f"{name}_scale"]))
    return model


def quantise(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model`` (``model`` is untouched): plain Linears become
    ``Int8Linear``; heads and declared stacked weights are stored int8."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, Int8Linear.from_float(child))
        for name, dim in stored_weights(module).items():
            if isinstance(module._parameters.get(name), Tensor):
                _store(module, name, dim)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def int8_params(model: nn.Module) -> int:
    """Weights held as int8 (they are buffers, not parameters)."""
    return sum(b.numel() for name, b in model.named_buffers() if name.endswith("_int8"))


# --- quantisation-aware training ------------------------------------------------------
def prepare_qat(model: nn.Module) -> nn.Module:
    """``model`` (in place) with fake quantisation on its plain Linears, the scheme
    ``Int8Linear`` runs: int8 per-token activations, int8 per-channel weights."""
    ao = torchao()
    # torchao fakes per-token activations asymmetric only; Int8Linear's are symmetric, a
    # range at most one bit coarser on one-signed rows
    act = ao.qat.IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
    weight = ao.qat.IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    with _quiet_import():
        ao.quantize_(model, ao.qat.QATConfig(activation_config=act, weight_config=weight, step="prepare"),
                     filter_fn=lambda m, _fqn: type(m) is nn.Linear)
    return model


def convert_qat(model: nn.Module) -> nn.Module:
    """Fake-quantised Linears back to plain ``nn.Linear`` (in place), ready for ``quantise``."""
    ao = torchao()
    with _quiet_import():
        ao.quantize_(model, ao.qat.QATConfig(step="convert"),
                     filter_fn=lambda m, _fqn: isinstance(m, ao.qat.FakeQuantizedLinear))
    return model
