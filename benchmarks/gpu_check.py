"""The CUDA path, run for real: one prepared command for a machine with a GPU.

    python -m benchmarks.gpu_check --out gpu-check            # on a CUDA machine
    python -m benchmarks.gpu_check --out /tmp/c --allow-cpu --quick   # the script itself, on CPU

Sized to take under 8 minutes on one GPU (an estimate: no GPU has run it yet).
Steps (each a row of ``DIR/summary.json``; tables also in ``DIR/tables.txt``):

1. ``pytest``: the tests that take the ``device`` fixture, ``-m device --device cuda``.
2. Per architecture (full + dense, sliding window + MoE top-k, dynamic span + MoE
   dynamic-k), on multi-query associative recall (synthetic: torch only):
   ``agree`` one forward/backward from the same initial weights on CPU and on the
   device (loss and gradients agree; a bf16 autocast forward stays finite);
   ``fit`` a few hundred steps on the device with replay, DER++, a curriculum and
   input masking (finite metrics), keeping the model; ``kept`` that model loaded and
   predicting on CPU, agreeing with its predictions on the device; ``fit_agree`` a
   4-step fit on CPU and on the device, every weight within Adam's bounded step.
3. ``bench_moe`` / ``bench_attention``: ``benchmarks.moe_layer`` and
   ``benchmarks.attention`` on the device, the same tables as on CPU (T = 1024-8192).
   A MISSED target is reported, not a failure.
4. ``search_local``: an in-process search of 4 trials on the device.
   ``search_ray``: a Ray search of 4 trials with ``gpus_per_trial: 0.5``, skipped when
   ``import ray`` fails.

Exit status: 0 all ran steps passed, 1 a step failed, 2 no CUDA (without
``--allow-cpu``, which runs every step on CPU instead: with ``--quick``, at tiny
size, so the script itself is tested, ``tests/test_gpu_check.py``).

Run it from the repository root; where ``dynas`` is not installed, the command links
the checkout in as ``dynas`` itself (``importable``). Besides torch and lightning the
steps import pyyaml, safetensors (kept models), tensorboard (a search's curves), pytest
and scikit-learn (``test_fit.py``'s digits task); the Ray step also ray[tune] and optuna.
``summary.json`` lists the installed version of each (``modules``). To bring the missing ones
to a GPU machine without a package index, download wheels on a machine with one, for
the GPU machine's Python and platform (e.g. cp311, manylinux x86_64), outside the
repository::

    pip download "ray[tune]" optuna safetensors tensorboard pyyaml pytest scikit-learn \\
        --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 -d ~/wheels
    # carry ~/wheels, then on the GPU machine (Ray's wheel and its pyarrow are the bulk,
    # together over 64 MiB: more than this project's lent machines carry; not measured)
    pip install --no-index --find-links ~/wheels "ray[tune]" optuna safetensors tensorboard \\
        pytest scikit-learn

Without Ray the Ray step is skipped and says so; ``--skip`` leaves out named steps.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from contextlib import redirect_stdout
from pathlib import Path

import torch

STEPS = ("pytest", "agree", "fit", "kept", "fit_agree", "bench_moe", "bench_attention",
         "search_local", "search_ray")
ADAM_STEP_BOUND = 3.2      # |Adam update| <= lr * (1 - beta1) / sqrt(1 - beta2) ~ 3.16 lr


class Skip(Exception):
    """A step that cannot run here (says why); not a failure."""


class Check:
    """Runs the steps, collects each one's status, detail and tables, writes them."""

    def __init__(self, out: Path, device: torch.device, quick: bool, skip: set[str]):
        self.out, self.device, self.quick, self.skip = out, device, quick, skip
        self.results: list[dict] = []
        self.tables = io.StringIO()

    def run(self, name: str, step, *args) -> object:
        kind = name.split(":")[0]
        started = time.perf_counter()
        row = {"step": name, "status": "ok"}
        value = None
        if kind in self.skip:
            row["status"], row["reason"] = "skipped", "--skip"
        else:
            try:
                value = step(self, *args)
                if isinstance(value, dict):
                    row["detail"] = value
            except Skip as why:
                row["status"], row["reason"] = "skipped", str(why)
            except Exception as err:  # a failed step is reported, the others still run
                row["status"], row["error"] = "failed", f"{type(err).__name__}: {err}"
                row["traceback"] = traceback.format_exc(limit=8)
        row["seconds"] = round(time.perf_counter() - started, 2)
        self.results.append(row)
        print(f"[{row['status']:>7}] {name} ({row['seconds']} s)"
              + (f": {row.get('error') or row.get('reason')}" if row["status"] != "ok" else ""),
              flush=True)
        return value

    def table(self, title: str, header: tuple, rows: list[tuple]) -> None:
        from benchmarks._timing import print_table

        buf = io.StringIO()
        with redirect_stdout(buf):
            print_table(title, header, rows)
        print(buf.getvalue(), end="")
        self.tables.write(buf.getvalue())

    def write(self) -> bool:
        ok = all(r["status"] != "failed" for r in self.results)
        summary = {"ok": ok, "device": str(self.device), "quick": self.quick,
                   "gpu": torch.cuda.get_device_name(0) if self.device.type == "cuda" else None,
                   "python": platform.python_version(), "modules": module_versions(),
                   "steps": self.results}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (self.out / "tables.txt").write_text(self.tables.getvalue())
        return ok


def importable(out: Path) -> None:
    """Make ``import dynas`` work from a bare checkout (a GPU machine where the package
    is not installed): a ``dynas`` link to the repository root in ``out/.path``, on
    this process's path and, through PYTHONPATH, on pytest's and Ray workers'."""
    try:
        import dynas  # noqa: F401
        return
    except ImportError:
        pass
    folder = (out / ".path").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "dynas"
    if not link.exists():
        link.symlink_to(Path(__file__).resolve().parent.parent, target_is_directory=True)
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


def module_versions() -> dict[str, str | None]:
    """The version of each package the steps use; None where it does not import."""
    from importlib import metadata

    found = {}
    for name in ("torch", "lightning", "pyyaml", "safetensors", "tensorboard", "pytest",
                 "scikit-learn", "ray", "optuna"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# --- 1. the device tests ---------------------------------------------------------------
def run_pytest(check: Check) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device",
           "--device", check.device.type, "tests/trainers/test_modules.py",
           "tests/trainers/test_fit.py"]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
    (check.out / "pytest.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"pytest exited {done.returncode}: {' | '.join(tail[-3:])}")
    return {"command": " ".join(cmd[1:]), "last_line": tail[-1] if tail else ""}


# --- 2. three architectures ------------------------------------------------------------
def architectures() -> dict:
    from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig

    def arch(attention, ffn):
        return ArchConfig(32, (LayerConfig(attention, ffn),) * 2)

    return {
        "full+dense": arch(AttentionConfig("full", 2), FFNConfig("dense", 2)),
        "sliding+moe_topk": arch(AttentionConfig("sliding_window", 2, window=16),
                                 FFNConfig("moe", 2, 4, RouterConfig("topk", 2), 1, 1.25, "aux_loss")),
        "span+moe_dynamic": arch(AttentionConfig("dynamic_span", 2, max_span=32),
                                 FFNConfig("moe", 2, 4, RouterConfig("dynamic", 3, 0.6), 0, 0.0, "bias")),
    }


def make_task(quick: bool):
    from dynas.search_space.settings import TaskSettings
    from dynas.trainers.tasks import build_task

    n = 96 if quick else 1024
    options = {"n_experiences": 2, "seq_len": 64, "n_train": n, "n_val": n // 4, "n_test": n // 4,
               "causal": True}
    return build_task(TaskSettings("assoc_recall", options), seed=0)


def training(device: torch.device, steps: int, eval_every: int = 50):
    from dynas.search_space.settings import CurriculumSettings, ReplaySettings, TrainingSettings

    return TrainingSettings(
        steps_per_experience=steps, batch_size=32, lr=3e-3, device=device.type,
        replay=ReplaySettings("reservoir", 128, der_alpha=0.1),
        curriculum=CurriculumSettings(kind="entropy", eval_every=eval_every, threshold=0.9,
                                      patience=1, mask_schedule="0.15->0.50"))


def agree(check: Check, arch, task) -> dict:
    """Same initial weights and batch: loss and gradients on CPU vs the device."""
    from dynas.trainers.evaluation import cross_entropy
    from dynas.trainers.model import build_model

    x, y = task.experiences[0].train.tensors[:2]
    x, y = x[:32], y[:32]
    torch.manual_seed(0)
    cpu = build_model(arch, task.shape)
    dev = build_model(arch, task.shape)
    dev.load_state_dict(cpu.state_dict())
    dev.to(check.device)
    losses, grads = [], []
    for model, where in ((cpu, torch.device("cpu")), (dev, check.device)):
        out = model(x.to(where))
        loss = cross_entropy(out.logits, y.to(where)) + sum(out.aux_losses.values(), 0.0)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.flatten().cpu() for p in model.parameters() if p.grad is not None]))
    loss_gap = abs(losses[0] - losses[1]) / max(abs(losses[0]), 1e-12)
    grad_gap = float((grads[0] - grads[1]).norm() / grads[0].norm().clamp_min(1e-12))
    if loss_gap > 1e-4 or grad_gap > 1e-3:
        raise AssertionError(f"CPU vs {check.device}: loss rel. gap {loss_gap:.2e} (<= 1e-4), "
                             f"gradient rel. gap {grad_gap:.2e} (<= 1e-3)")
    detail = {"loss": losses[0], "loss_rel_gap": loss_gap, "grad_rel_gap": grad_gap}
    if check.device.type == "cuda":       # AMP: the span's -inf/log masks in bf16
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            logits = dev(x.to(check.device)).logits
        if not torch.isfinite(logits).all():
            raise AssertionError("bf16 autocast forward gave non-finite logits")
        detail["bf16_max_abs_gap"] = float((logits.float().cpu() - cpu(x).logits).abs().max())
    return detail


def fit_on_device(check: Check, name: str, arch, task) -> dict:
    from dynas.trainers.fitting import fit

    steps = 20 if check.quick else 150
    metrics = fit(arch, task, training(check.device, steps), seed=0,
                  weights_dir=check.out / "models" / name)
    bad = {k: v for k, v in metrics.values.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise AssertionError(f"non-finite metrics: {bad}")
    return {"steps": metrics.steps, "wall_time_s": round(metrics.wall_time_s, 2),
            "acc_matrix": metrics.acc_matrix, "final_avg_accuracy": metrics.values["final_avg_accuracy"]}


def kept(check: Check, name: str, task) -> dict:
    """The model kept on the device, loaded on CPU: same predictions as on the device."""
    from dynas.trainers.predict import load_model

    if not (check.out / "models" / name).is_dir():
        raise Skip("no kept model: the fit step did not keep one")
    raw = task.experiences[0].raw_test[:64]
    on_cpu = load_model(check.out / "models" / name).predict(raw)
    on_dev = load_model(check.out / "models" / name, device=check.device).predict(raw)
    if not torch.isfinite(on_cpu.logits).all():
        raise AssertionError("non-finite logits on CPU")
    same = float((on_cpu.classes == on_dev.classes).float().mean())
    gap = (on_cpu.logits - on_dev.logits).abs()
    gap = gap[torch.isfinite(gap)]
    if same < 0.99 or float(gap.median()) > 1e-4:
        raise AssertionError(f"CPU vs {check.device}: {same:.3f} same classes (>= 0.99), "
                             f"median logit gap {float(gap.median()):.2e} (<= 1e-4)")
    return {"same_classes": same, "max_logit_gap": float(gap.max()), "median_logit_gap": float(gap.median())}


def fit_agree(check: Check, arch, task) -> dict:
    """A 4-step fit on CPU and on the device from one seed: same data, masks, replay
    draws and initial weights, so every weight differs by at most Adam's bounded step
    per step (float rounding can flip a gradient's sign, never more)."""
    from dynas.trainers.bundle import read_weights
    from dynas.trainers.fitting import fit

    weights = {}
    for label, where in (("cpu", torch.device("cpu")), ("device", check.device)):
        out = check.out / "fit_agree" / f"{arch.arch_id}-{label}"
        cfg = training(where, 2, eval_every=1)
        fit(arch, task, cfg, seed=1, weights_dir=out)
        weights[label] = read_weights(out / "weights.safetensors")
    steps = 2 * task.num_experiences
    bound = 2 * ADAM_STEP_BOUND * cfg.lr * steps
    gap = max(float((weights["cpu"][k].float() - weights["device"][k].float()).abs().max())
              for k in weights["cpu"])
    if gap > bound:
        raise AssertionError(f"a weight differs by {gap:.3g} after {steps} steps (> {bound:.3g})")
    return {"steps": steps, "max_weight_gap": gap, "bound": bound}


# --- 3. the benchmarks -----------------------------------------------------------------
def bench_moe(check: Check) -> dict:
    from benchmarks import moe_layer

    size = dict(tokens=256, d_model=64, hidden=128, repeats=2) if check.quick else {}
    title, rows = moe_layer.table(device=check.device, threads=torch.get_num_threads(), **size)
    check.table(title, moe_layer.HEADER, rows)
    return {"title": title, "header": moe_layer.HEADER, "rows": rows}


def bench_attention(check: Check) -> dict:
    from benchmarks import attention

    size = (dict(lengths=[64, 128], window=16, d_model=64, repeats=1) if check.quick
            else dict(lengths=[1024, 2048, 4096, 8192]))
    title, rows = attention.table(device=check.device, extra=True, threads=torch.get_num_threads(),
                                  **size)
    check.table(title, attention.HEADER, rows)
    return {"title": title, "header": attention.HEADER, "rows": rows}


# --- 4. searches -------------------------------------------------------------------------
def experiment_file(check: Check, name: str, gpus_per_trial: float) -> Path:
    import yaml

    n = 64 if check.quick else 512
    data = {
        "space": {"layers": [1, 2], "d_model": [32],
                  "layer": {"attention": [{"kind": "full", "heads": [2]},
                                          {"kind": "sliding_window", "heads": [2], "window": [8]},
                                          {"kind": "dynamic_span", "heads": [2], "max_span": [16]}],
                            "ffn": [{"kind": "dense", "expansion": [2]},
                                    {"kind": "moe", "experts": [4], "top_k": [1, 2],
                                     "router": ["topk", "dynamic"], "top_p": 0.6, "expansion": 2}]}},
        "task": {"name": "assoc_recall",
                 "options": {"n_experiences": 2, "seq_len": 32, "n_train": n, "n_val": n // 4,
                             "n_test": n // 4}},
        "training": {"steps_per_experience": 10 if check.quick else 60, "batch_size": 32,
                     "device": check.device.type},
        "search": {"strategy": "random", "trials": 4, "concurrent": 2, "seed": 0,
                   "gpus_per_trial": gpus_per_trial, "keep_weights": "all",
                   "storage": str(check.out / "runs")},
    }
    path = check.out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _complete(run_dir: Path) -> dict:
    from dynas.controllers.records import iter_records

    records = [r for r in iter_records(run_dir) if not r.baseline and r.repeat_of is None]
    states = [r.state for r in records]
    if states.count("complete") < 4:
        reasons = [r.reason for r in records if r.state != "complete"]
        raise AssertionError(f"{states.count('complete')} of 4 trials complete: {states} {reasons}")
    return {"run_dir": str(run_dir), "states": states}


def search_local(check: Check) -> dict:
    from dynas.controllers.runs import run_local_experiment
    from dynas.search_space.experiment import load_experiment

    experiment = load_experiment(experiment_file(check, "search_local", 0.0))
    run_dir = check.out / "runs" / "local"
    run_local_experiment(experiment, run_dir)
    return _complete(run_dir)


def search_ray(check: Check) -> dict:
    try:
        import ray  # noqa: F401
        import optuna  # noqa: F401
    except ImportError as err:
        raise Skip(f"{err}; bring wheels (module docstring)") from None
    from dynas.controllers.runs import run_search

    gpus = 0.5 if check.device.type == "cuda" else 0.0
    run_dir = run_search(experiment_file(check, "search_ray", gpus), name="ray", verbose=0)
    return {**_complete(run_dir), "gpus_per_trial": gpus}


# --- the command -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for summary.json, tables, models")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--allow-cpu", action="store_true", help="without CUDA, run every step on CPU")
    p.add_argument("--skip", nargs="+", default=[], choices=STEPS, metavar="STEP",
                   help=f"steps to leave out: {', '.join(STEPS)}")
    args = p.parse_args(argv)
    if torch.cuda.is_available():
        device = torch.device("cuda")
    elif args.allow_cpu:
        device = torch.device("cpu")
    else:
        print("gpu_check: torch sees no CUDA device; run it on a GPU machine, or pass "
              "--allow-cpu to check the script itself on CPU", file=sys.stderr)
        return 2
    check = Check(args.out, device, args.quick, set(args.skip))
    args.out.mkdir(parents=True, exist_ok=True)
    importable(args.out)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "no GPU: --allow-cpu"
    print(f"gpu_check on {device} ({gpu}), out={args.out}", flush=True)
    check.run("pytest", run_pytest)
    task = make_task(args.quick)
    for name, arch in architectures().items():
        check.run(f"agree:{name}", agree, arch, task)
        check.run(f"fit:{name}", fit_on_device, name, arch, task)
        check.run(f"kept:{name}", kept, name, task)
        check.run(f"fit_agree:{name}", fit_agree, arch, task)
    check.run("bench_moe", bench_moe)
    check.run("bench_attention", bench_attention)
    check.run("search_local", search_local)
    check.run("search_ray", search_ray)
    ok = check.write()
    print(f"gpu_check: {'all steps passed' if ok else 'FAILED'}; summary in {args.out / 'summary.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
