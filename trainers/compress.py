"""``dynas compress``: prune, recover, quantise a trained model; measure before and after.

1. Pruning (``trainers.pruning``): experts by their measured load on the validation
   splits, heads and FFN channels by importance (Taylor on replay data, or weight norms).
2. Recovery (``trainers.recovery``): a short fine-tune that distils the unpruned model
   (KL on its softened logits plus the label loss) on a class-balanced replay sample
   of every experience, optionally in several prune-and-recover rounds.
3. int8: dynamic quantisation of every ``nn.Linear`` (``torch.ao.quantization``); MoE
   experts are batched parameters, not Linear layers, and stay float.

The output folder is a bundle (``trainers.bundle``) plus ``compress.json`` (the plan,
whether int8, the before/after table). int8 weights are stored as int8 tensors with
their scale and zero point in safetensors (no pickle); ``load_model`` rebuilds the
pruned, quantised model from the architecture, the plan and those tensors.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dynas.search_space.boundary import json_file
from dynas.search_space.errors import DynasError

from .bundle import (ARCH_FILE, COMPRESSED_MARK, MODEL_FILE, WEIGHTS_FILE, WEIGHTS_MAGIC, Bundle,
                     load_bundle_model, read_weights, register_rebuild)
from .evaluation import accumulate_experts, batches, eval_mode, evaluate_row
from .latency import example_input, interleaved_latency_ms
from .pruning import PruneSpec, apply_plan
from .recovery import RecoverySettings, prune_and_recover

COMPRESS_FILE = COMPRESSED_MARK


@dataclass
class Measurement:
    name: str
    params: int
    file_bytes: int
    latency_b1_ms: float
    latency_b64_ms: float
    accuracy: float                 # mean test accuracy over experiences (final row of R)


# --- measuring ------------------------------------------------------------------------
def count_params(model: nn.Module) -> int:
    """Float parameters plus the weights packed inside dynamically quantised Linears."""
    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            w, b = m._weight_bias()
            n += w.numel() + (b.numel() if b is not None else 0)
    return n


def accuracy(model: nn.Module, task: Any, scenario: str, num_classes: int) -> float:
    row, _ = evaluate_row(model, task.experiences, scenario=scenario, num_classes=num_classes,
                          batch_size=256, device=torch.device("cpu"), split="test")
    return sum(row) / len(row)


def measure(stages: list[tuple[str, nn.Module, int]], bundle: Bundle, task: Any,
            repeats: int) -> list[Measurement]:
    """One row per ``(name, model, file bytes)``; latencies timed round-robin on CPU."""
    shape = bundle.shape
    models = {name: model for name, model, _ in stages}
    b1 = interleaved_latency_ms(models, example_input(shape, 1), repeats)
    b64 = interleaved_latency_ms(models, example_input(shape, 64), repeats)
    return [Measurement(name, count_params(model), size, b1[name], b64[name],
                        accuracy(model, task, bundle.scenario, shape.num_classes))
            for name, model, size in stages]


def expert_loads(model: nn.Module, task: Any) -> dict[str, torch.Tensor]:
    """Tokens each expert received over every experience's validation split."""
    counts: dict[str, torch.Tensor] = {}
    with eval_mode(model):
        for exp in task.experiences:
            for x, _ in batches(exp.val, 256):
                accumulate_experts(counts, model(x).tokens_per_expert)
    return counts


# --- steps ----------------------------------------------------------------------------
def quantise(model: nn.Module) -> nn.Module:
    """int8 dynamic quantisation of the Linear layers (a copy; ``model`` is untouched).
    torch 2.13 marks torch.ao's quantised tensors deprecated; its warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


# --- int8 weights in safetensors ------------------------------------------------------
def int8_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Float state plus, per quantised Linear, ``.weight_int8`` / ``.weight_scale`` /
    ``.weight_zero_point`` / ``.bias``."""
    out = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor) and not v.is_quantized}
    out = {k: v for k, v in out.items() if "_packed_params" not in k}
    for name, m in model.named_modules():
        if isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            w, b = m._weight_bias()
            out[f"{name}.weight_int8"] = w.int_repr().contiguous()
            out[f"{name}.weight_scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
            out[f"{name}.weight_zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
            if b is not None:
                out[f"{name}.bias"] = b.detach().contiguous()
    return out


def load_int8(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> nn.Module:
    """A float (pruned) model filled from ``int8_tensors`` output and quantised.

    The float tensors go into the float model first (quantised Linears take no
    ``load_state_dict`` of float weights); then its Linears are quantised and given the
    saved int8 weights."""
    # exactly the modules quantize_dynamic swaps: plain Linears (a head subclassing
    # Linear keeps its own forward, so it stays float)
    linears = {name for name, m in model.named_modules() if type(m) is nn.Linear}
    floats = {k: v for k, v in tensors.items() if k.rsplit(".", 1)[0] not in linears}
    missing, unexpected = model.load_state_dict(floats, strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[0] not in linears]
    if missing or unexpected:
        raise DynasError(f"{source}: key {(missing or unexpected)[0]}: "
                         f"{'missing' if missing else 'not in this model'}")
    model = quantise(model)
    for name, m in model.named_modules():
        if name in linears:
            try:
                w = torch._make_per_tensor_quantized_tensor(    # the int8 values as saved
                    tensors[f"{name}.weight_int8"], float(tensors[f"{name}.weight_scale"][0]),
                    int(tensors[f"{name}.weight_zero_point"][0]))
            except KeyError as err:
                raise DynasError(f"{source}: key {err.args[0]}: missing") from None
            m.set_weight_bias(w, tensors.get(f"{name}.bias"))
    return model


# --- the command's work ---------------------------------------------------------------
def compress(src: str | os.PathLike, task: Any, out: str | os.PathLike, spec: PruneSpec, int8: bool,
             recovery: RecoverySettings, repeats: int = 30) -> list[Measurement]:
    """Compress the bundle at ``src`` (its task built as ``task``) into ``out``."""
    model, bundle = load_bundle_model(src)
    if task.name != bundle.task or task.shape != bundle.shape:
        raise DynasError(f"{src}: trained on {bundle.task} {bundle.shape}, not the config's "
                         f"{task.name} {task.shape}")
    stages = [("original", model, bundle.weights_path.stat().st_size)]
    plan: list = [{} for _ in model.layers]
    current = model
    if spec != PruneSpec():
        plan, recovered = prune_and_recover(model, task, spec, recovery, expert_loads(model, task))
    if any(plan):
        current = copy.deepcopy(model)
        apply_plan(current, plan)
        stages.append(("pruned", current, _size(current)))
        if recovery.steps:
            current = recovered
            steps = recovery.steps * recovery.rounds
            stages.append((f"pruned + {steps} recovery steps", current, _size(current)))
    if int8:
        current = quantise(current)
        name = stages[-1][0] + " + int8" if len(stages) > 1 else "int8"
        stages.append((name, current, _size(current, int8=True)))
    rows = measure(stages, bundle, task, repeats)
    _save(current, bundle, Path(out), plan, int8, spec, recovery, rows)
    return rows


def _size(model: nn.Module, int8: bool = False) -> int:
    """Bytes of the safetensors file this model would be saved as."""
    from safetensors.torch import save

    tensors = int8_tensors(model) if int8 else {k: v.contiguous() for k, v in model.state_dict().items()}
    return len(save(tensors, metadata={"format": WEIGHTS_MAGIC}))


def _save(model: nn.Module, bundle: Bundle, out: Path, plan: list, int8: bool, spec: PruneSpec,
          recovery: RecoverySettings, rows: list[Measurement]) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = int8_tensors(model) if int8 else {k: v.contiguous() for k, v in model.state_dict().items()}
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": WEIGHTS_MAGIC, "arch_id": bundle.arch.arch_id})
    for name in (ARCH_FILE, MODEL_FILE):
        shutil.copyfile(bundle.path / name, out / f".{name}.tmp")
    meta = {"plan": plan, "int8": int8, "prune": asdict(spec), "recovery": asdict(recovery),
            "source": str(bundle.path.resolve()),
            "table": [asdict(r) for r in rows]}
    (out / f".{COMPRESS_FILE}.tmp").write_text(json.dumps(meta, indent=2) + "\n")
    for name in (WEIGHTS_FILE, ARCH_FILE, MODEL_FILE, COMPRESS_FILE):
        os.replace(out / f".{name}.tmp", out / name)


def rebuild(model: nn.Module, bundle: Bundle) -> nn.Module:
    """A compressed bundle's model: ``model`` (fresh from the arch) cut to the plan,
    quantised if int8, with the saved weights."""
    path = bundle.path / COMPRESS_FILE
    meta = read_compress_file(path)
    try:
        apply_plan(model, meta["plan"])
    except (IndexError, RuntimeError, ValueError, TypeError) as err:
        raise DynasError(f"{path}: plan: does not fit {bundle.path / ARCH_FILE} ({type(err).__name__})") from None
    tensors = read_weights(bundle.weights_path, bundle.arch.arch_id)
    if meta.get("int8"):
        model = load_int8(model, tensors, bundle.weights_path)
    else:
        try:
            model.load_state_dict(tensors)
        except RuntimeError:
            raise DynasError(f"{bundle.weights_path}: tensors do not fit the plan of {path}") from None
    return model.eval()


def _indices(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)


def read_compress_file(path: Path) -> dict[str, Any]:
    """``compress.json``, checked: ``plan`` a list (one mapping per layer of kept
    ``heads``/``experts``/``ffn`` indices), ``int8`` true or false; else one line."""
    meta = json_file(path)
    if not isinstance(meta, dict):
        raise DynasError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    plan = meta.get("plan")
    if not isinstance(plan, list) or not all(isinstance(e, dict) for e in plan):
        raise DynasError(f"{path}: plan: must be a list of mappings, one per layer")
    for i, entry in enumerate(plan):
        for key, value in entry.items():
            ok = _indices(value) or (key == "ffn" and isinstance(value, list) and all(_indices(v) for v in value))
            if key not in ("heads", "experts", "ffn") or not ok:
                raise DynasError(f"{path}: plan[{i}].{key}: must be heads, experts or ffn with lists of indices")
    if not isinstance(meta.get("int8", False), bool):
        raise DynasError(f"{path}: int8: must be true or false")
    return meta


register_rebuild(COMPRESS_FILE, rebuild)


def table(rows: list[Measurement]) -> str:
    """Markdown: each row and its ratio to the original."""
    base = rows[0]
    lines = ["| model | params | file KB | batch-1 ms | batch-64 ms | accuracy |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.params:,} | {r.file_bytes / 1024:.1f} ({base.file_bytes / r.file_bytes:.2f}x smaller) "
                     f"| {r.latency_b1_ms:.3f} ({base.latency_b1_ms / r.latency_b1_ms:.2f}x) "
                     f"| {r.latency_b64_ms:.3f} ({base.latency_b64_ms / r.latency_b64_ms:.2f}x) "
                     f"| {100 * r.accuracy:.2f} ({100 * (r.accuracy - base.accuracy):+.2f}) |")
    return "\n".join(lines)
