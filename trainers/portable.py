"""Portable model files: ``torch.export`` (``.pt2``) and ONNX (``.onnx``, when the
``onnx`` and ``onnxscript`` packages are installed).

Both hold the model's forward from *preprocessed* inputs (the bundle's
``model.json`` keeps the preprocessing) to logits: ``(B, T, I)`` floats or ``(B, T)``
token ids -> ``(B, C)`` (or ``(B, T, C)``), with a dynamic batch size. MoE layers route
with data-dependent shapes (tokens per expert) that ``torch.export`` cannot trace;
exporting one is a DynasError saying so, not a crash.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from dynas.search_space.errors import DynasError

from .bundle import Bundle
from .latency import example_input

FORMATS = (".pt2", ".onnx")


class LogitsOnly(nn.Module):
    """The model with only its logits as output (exporters want tensors out)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).logits


def _exported(model: nn.Module, bundle: Bundle) -> torch.export.ExportedProgram:
    if any(layer.ffn.kind == "moe" for layer in bundle.arch.layers):
        raise DynasError(f"{bundle.path}: MoE routing has data-dependent shapes that torch.export "
                         "cannot trace; portable export supports architectures without MoE layers")
    x = example_input(bundle.shape, 2)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        return torch.export.export(LogitsOnly(model.eval()), (x,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as err:  # an op the exporter cannot trace: name it, no traceback
        raise DynasError(f"{bundle.path}: torch.export failed ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None


def export_portable(model: nn.Module, bundle: Bundle, out: str | os.PathLike) -> Path:
    """Write ``out`` (.pt2 or .onnx by its suffix); an existing file is the caller's to protect."""
    out = Path(out)
    if out.suffix not in FORMATS:
        raise DynasError(f"{out}: unknown portable format; use a file ending in {' or '.join(FORMATS)}")
    program = _exported(model, bundle)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".pt2":
        torch.export.save(program, str(tmp))
    else:
        try:
            import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
        except ImportError:
            raise DynasError("ONNX export needs the onnx and onnxscript packages "
                             "(pip install 'dynas[onnx]')") from None
        torch.onnx.export(program, (example_input(bundle.shape, 2),), str(tmp), dynamo=True,
                          input_names=["x"], output_names=["logits"], verbose=False, report=False)
    os.replace(tmp, out)
    return out


def load_pt2(path: str | os.PathLike) -> nn.Module:
    """The exported program of a ``.pt2`` file as a callable module (x -> logits)."""
    return torch.export.load(str(path)).module()
