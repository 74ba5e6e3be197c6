"""``dynas inspect MODEL_DIR --input ... | --example N``: what a kept model's dynamic
blocks do on one input, token by token.

For one input (token ids ``"3,17,5"``, or text where the model's preprocessing takes
text; or ``--example N``, the N-th example of the validation splits of the task the
model was trained on, experience 0's first, rebuilt from the options and seed its
folder keeps: never a test example) it runs the model once in evaluation mode and
draws, per MoE layer, the realised k of every token (how many experts its router
used), and per dynamic-span layer the span each head attends over (learned, the same
for every token; the evaluated crop beside it). Written: ``inspect.png`` and
``inspect.html`` (the tokens coloured by k) in ``--out``. Bad input (no model folder,
an input of the wrong type or too long, an example index out of range, ``--example``
on a folder saved before task options were kept) is one line naming it, exit 2.
"""
from __future__ import annotations

import argparse
import html
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dynas.search_space.errors import DynasError

from .plots import _save

IDS = re.compile(r"^\s*\d+(\s*[,\s]\s*\d+)*\s*$")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="per-token view of a kept model's dynamic blocks on one input",
        description="Run a kept model (dynas export --weights, dynas train) on one input and "
        "draw each MoE layer's realised k per token and each dynamic-span layer's span per head.")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a kept model folder")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", metavar="INPUT",
                       help="token ids ('3,17,5') or text, for a model whose preprocessing takes text")
    given.add_argument("--example", type=int, metavar="N",
                       help="the N-th validation example (0-based, experience by experience) of the "
                       "task the model was trained on; never a test example")
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: here)")
    p.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    paths = inspect_model(args.model_dir, args.input, args.out, example=args.example)
    for path in paths:
        print(path)
    return 0


def _model_input(predictor, raw: str):
    """(1, T) model input from token ids or text; a DynasError naming ``--input`` else."""
    import torch

    shape = predictor.bundle.shape
    if not shape.vocab_size:
        raise DynasError("--input: this model reads continuous features, not tokens or text")
    if IDS.match(raw):
        ids = [int(t) for t in re.split(r"[,\s]+", raw.strip())]
        x = torch.tensor([ids])
    else:
        try:
            x = predictor.prepare([raw])
        except (DynasError, TypeError, ValueError):
            raise DynasError("--input: expected token ids like '3,17,5' (this model's "
                             "preprocessing does not take text)") from None
    if x.shape[1] > shape.seq_len:
        raise DynasError(f"--input: {x.shape[1]} tokens, the model reads at most {shape.seq_len}")
    if int(x.min()) < 0 or int(x.max()) >= shape.vocab_size:
        raise DynasError(f"--input: token ids must be in [0, {shape.vocab_size})")
    return x


def trace(model, x) -> tuple[dict[str, list[int]], dict[str, dict[str, Any]]]:
    """(realised k per token per MoE layer, spans per dynamic-span layer) of one forward."""
    import torch

    from dynas.trainers.dynamics import learned_spans
    from dynas.trainers.modules import MoE

    per_token: dict[str, list[int]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, MoE):
            def hook(_m, _inputs, out, name=name):
                per_token[name] = [int(k) for k in out.valid.sum(dim=1)]     # (N,) for B = 1
            hooks.append(module.router.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return per_token, learned_spans(model)


def validation_example(bundle, n: int):
    """(1, ...) input of the n-th example of the validation splits (experience 0's
    first) of the task ``bundle`` was trained on, rebuilt from its saved options."""
    from dynas.trainers.bundle import MODEL_FILE, rebuild_task

    if bundle.task_options is None or bundle.task_seed is None:
        raise DynasError(f"--example: needs a model folder saved by this version of dynas "
                         f"({bundle.path / MODEL_FILE} keeps no task options); give --input")
    from torch.utils.data import ConcatDataset

    val = ConcatDataset([e.val for e in rebuild_task(bundle).experiences])
    if not 0 <= n < len(val):
        raise DynasError(f"--example: {n} is out of range; the validation splits hold {len(val)} "
                         f"examples (0..{len(val) - 1})")
    return val[n][0].unsqueeze(0)


def inspect_model(model_dir: str, raw: str | None, out: str, example: int | None = None) -> list[Path]:
    """``inspect.png`` and ``inspect.html`` of one input: ``raw`` (ids or text) or the
    validation ``example`` (module docstring)."""
    from dynas.trainers.predict import load_model

    if not Path(model_dir).is_dir():
        raise DynasError(f"{model_dir}: no such model folder")
    predictor = load_model(model_dir)
    x = validation_example(predictor.bundle, example) if example is not None else _model_input(predictor, raw)
    k, spans = trace(predictor.model, x)
    if not k and not spans:
        raise DynasError(f"{model_dir}: the model has no dynamic blocks (no MoE, no dynamic span)")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = [int(t) for t in x[0]] if x.dim() == 2 else list(range(x.shape[1]))  # ids, or positions
    return [_figure(tokens, k, spans, folder / "inspect.png"), _html(tokens, k, folder / "inspect.html")]


def _figure(tokens: list[int], k: dict[str, list[int]], spans: dict[str, dict], path: Path) -> Path:
    rows = len(k) + len(spans)
    fig = Figure(figsize=(max(6.0, 0.25 * len(tokens) + 2), 2.4 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)).ravel()
    for ax, (name, per_token) in zip(axes, k.items()):
        shown = per_token[-len(tokens):]                 # a CLS token comes first
        ax.bar(np.arange(len(shown)), shown, color="#1f77b4")
        ax.set_title(f"{name}: realised k per token (mean {np.mean(shown):.2f})", fontsize=9)
        ax.set_xticks(np.arange(len(tokens)))
        ax.set_xticklabels(tokens, fontsize=6, rotation=90)
        ax.set_ylabel("experts", fontsize=8)
    for ax, (name, s) in zip(axes[len(k):], spans.items()):
        ax.bar(np.arange(len(s["heads"])), s["heads"], color="#2ca02c")
        ax.axhline(s["crop"], color="grey", ls="--", lw=1)
        ax.set_title(f"{name}: span per head (dashed: evaluated crop {s['crop']})", fontsize=9)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("tokens", fontsize=8)
        ax.set_xticks(np.arange(len(s["heads"])))
    fig.tight_layout()
    return _save(fig, path)


def _html(tokens: list[int], k: dict[str, list[int]], path: Path) -> Path:
    rows = []
    for name, per_token in k.items():
        top = max(max(per_token), 1)
        cells = "".join(f'<td style="background: rgba(31,119,180,{kk / top:.2f})" title="k={kk}">{t}</td>'
                        for t, kk in zip(tokens, per_token[-len(tokens):]))
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    body = "<table>" + "".join(rows) + "</table>" if rows else "<p>no MoE layer</p>"
    path.write_text(f"<!doctype html><meta charset=utf-8><title>dynas inspect</title>"
                    f"<h1>Realised k per token</h1>{body}\n", encoding="utf-8")
    return path
