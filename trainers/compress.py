"""``dynas compress``: prune, recover, quantise a trained model; measure before and after.

1. Pruning (``trainers.pruning``): experts by their measured load on the validation
   splits, heads and FFN channels by importance (Taylor on replay data, or weight norms).
2. Recovery (``trainers.recovery``): a short fine-tune that distils the unpruned model
   (KL on its softened logits plus the label loss) on a class-balanced replay sample
   of every experience, optionally in several prune-and-recover rounds.
3. int8 (``trainers.quantisation``, on torchao): plain Linears run on int8 units,
   heads and MoE experts are stored int8; with ``qat_steps`` the same distillation
   (``trainers.recovery``) first runs with fake quantisation (quantisation-aware training).

The output folder is a bundle (``trainers.bundle``) plus ``compress.json`` (the plan,
whether int8 and its format, the before/after table). int8 weights are int8 tensors
with their scales in safetensors (no pickle); ``load_model`` rebuilds the pruned,
quantised model from the architecture, the plan and those tensors. The table's last
row is measured on the folder as written, loaded back: the model a user gets.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
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
from .quantisation import INT8_FORMAT, convert_qat, int8_params, prepare_qat, quantise, refresh
from .recovery import RecoverySettings, prune_and_recover, recover, replay_sample

COMPRESS_FILE = COMPRESSED_MARK


@dataclass
class Measurement:
    name: str
    params: int
    file_bytes: int
    latency_ms: dict[str, float]    # batch size -> median CPU ms (str keys: the JSON table's)
    accuracy: float                 # mean test accuracy over experiences (final row of R)


# --- measuring ------------------------------------------------------------------------
def count_params(model: nn.Module) -> int:
    """Float parameters plus the weights held as int8."""
    return sum(p.numel() for p in model.parameters()) + int8_params(model)


def accuracy(model: nn.Module, task: Any, scenario: str, num_classes: int) -> float:
    row, _ = evaluate_row(model, task.experiences, scenario=scenario, num_classes=num_classes,
                          batch_size=256, device=torch.device("cpu"), split="test")
    return sum(row) / len(row)


def measure(stages: list[tuple[str, nn.Module, int]], bundle: Bundle, task: Any,
            repeats: int, latency_batches: tuple[int, ...] = (1, 64)) -> list[Measurement]:
    """One row per ``(name, model, file bytes)``; latencies timed round-robin on CPU at
    each of ``latency_batches``."""
    shape = bundle.shape
    models = {name: model for name, model, _ in stages}
    times = {b: interleaved_latency_ms(models, example_input(shape, b), repeats) for b in latency_batches}
    return [Measurement(name, count_params(model), size, {str(b): times[b][name] for b in latency_batches},
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


# --- the command's work ---------------------------------------------------------------
def compress(src: str | os.PathLike, task: Any, out: str | os.PathLike, spec: PruneSpec, int8: bool,
             recovery: RecoverySettings, repeats: int = 30, qat_steps: int = 0,
             latency_batches: tuple[int, ...] = (1, 64)) -> list[Measurement]:
    """Compress the bundle at ``src`` (its task built as ``task``) into ``out``; with
    ``int8`` and ``qat_steps``, that many steps of ``recovery``'s distillation with fake
    quantisation come before the conversion."""
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
        name = stages[-1][0] + " + " if len(stages) > 1 else ""
        if qat_steps:
            student = prepare_qat(copy.deepcopy(current))
            recover(student, model, replay_sample(task, recovery.per_class), replace(recovery, steps=qat_steps))
            current = convert_qat(student)
            name += f"{qat_steps} QAT steps + "
        current = quantise(current)
        stages.append((name + "int8", current, 0))
    out = Path(out)
    meta = {"plan": plan, "int8": int8, **({"int8_format": INT8_FORMAT} if int8 else {}),
            "prune": asdict(spec), "recovery": asdict(recovery),
            "source": str(bundle.path.resolve()), "table": []}
    _save(current, bundle, out, meta)
    if len(stages) > 1:                   # the last row: the folder as a user loads it
        stages[-1] = (stages[-1][0], load_bundle_model(out)[0], (out / WEIGHTS_FILE).stat().st_size)
    rows = measure(stages, bundle, task, repeats, latency_batches)
    _write_meta(out, {**meta, "table": [asdict(r) for r in rows]})
    return rows


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a (pruned, int8 or float) model saves: its state, int8 weights as buffers."""
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _size(model: nn.Module) -> int:
    """Bytes of the safetensors file this model would be saved as."""
    from safetensors.torch import save

    return len(save(_tensors(model), metadata={"format": WEIGHTS_MAGIC}))


def _save(model: nn.Module, bundle: Bundle, out: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    save_file(_tensors(model), str(tmp), metadata={"format": WEIGHTS_MAGIC, "arch_id": bundle.arch.arch_id})
    for name in (ARCH_FILE, MODEL_FILE):
        shutil.copyfile(bundle.path / name, out / f".{name}.tmp")
    for name in (WEIGHTS_FILE, ARCH_FILE, MODEL_FILE):
        os.replace(out / f".{name}.tmp", out / name)
    _write_meta(out, meta)


def _write_meta(out: Path, meta: dict[str, Any]) -> None:
    """``compress.json``, written last and atomically: a folder without it is no model."""
    (out / f".{COMPRESS_FILE}.tmp").write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(out / f".{COMPRESS_FILE}.tmp", out / COMPRESS_FILE)


def rebuild(model: nn.Module, bundle: Bundle) -> nn.Module:
    """A compressed bundle's model: ``model`` (fresh from the arch) cut to the plan,
    quantised if int8, with the saved weights."""
    path = bundle.path / COMPRESS_FILE
    meta = read_compress_file(path)
    if meta["int8"] and meta.get("int8_format") != INT8_FORMAT:
        source = meta.get("source") if isinstance(meta.get("source"), str) else "MODEL_DIR"
        raise DynasError(f"{path}: int8 weights in the torch.ao format of earlier dynas versions, which "
                         f"this version does not load; compress the source again: dynas compress {source} "
                         f"--int8 --out {bundle.path}-int8")
    try:
        apply_plan(model, meta["plan"])
    except (IndexError, RuntimeError, ValueError, TypeError) as err:
        raise DynasError(f"{path}: plan: does not fit {bundle.path / ARCH_FILE} ({type(err).__name__})") from None
    tensors = read_weights(bundle.weights_path, bundle.arch.arch_id)
    if meta["int8"]:
        model = quantise(model)
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError:
        raise DynasError(f"{bundle.weights_path}: tensors do not fit the plan of {path}") from None
    if missing or unexpected:
        raise DynasError(f"{bundle.weights_path}: key {(missing or unexpected)[0]}: "
                         f"{'missing' if missing else 'not in this model'}")
    return refresh(model).eval()


def _indices(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)


def read_compress_file(path: Path) -> dict[str, Any]:
    """``compress.json``, checked: ``plan`` a list (one mapping per layer of kept
    ``heads``/``experts``/``ffn`` indices), ``int8`` true or false (default false), an
    ``int8_format`` string if any; else one line."""
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
    meta.setdefault("int8", False)
    if not isinstance(meta["int8"], bool):
        raise DynasError(f"{path}: int8: must be true or false")
    if not isinstance(meta.get("int8_format", ""), str):
        raise DynasError(f"{path}: int8_format: must be a string")
    return meta


register_rebuild(COMPRESS_FILE, rebuild)


def table(rows: list[Measurement]) -> str:
    """Markdown: each row and its ratio to the original (latency: x faster)."""
    base = rows[0]
    batches = list(base.latency_ms)
    lines = ["| model | params | file KB | " + " | ".join(f"batch-{b} ms" for b in batches) + " | accuracy |",
             "|---|---|---|" + "---|" * len(batches) + "---|"]
    for r in rows:
        times = " | ".join(f"{r.latency_ms[b]:.3f} ({base.latency_ms[b] / r.latency_ms[b]:.2f}x)" for b in batches)
        lines.append(f"| {r.name} | {r.params:,} | {r.file_bytes / 1024:.1f} ({base.file_bytes / r.file_bytes:.2f}x smaller) "
                     f"| {times} | {100 * r.accuracy:.2f} ({100 * (r.accuracy - base.accuracy):+.2f}) |")
    return "\n".join(lines)
