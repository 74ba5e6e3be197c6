"""``benchmarks/gpu_check.py``, the prepared GPU command, run on CPU at tiny size so the
script itself is known to work before a GPU ever runs it (issue 29)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import STEPS, main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_refuses_in_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-cpu" in err
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_allow_cpu_quick_runs_every_step_and_writes_the_summary(tmp_path):
    # pytest (this suite, nested) and Ray (a cluster on a shared machine) are left out
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path), "--allow-cpu",
         "--quick", "--skip", "pytest", "search_ray"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and summary["device"] == "cpu" and summary["quick"]
    status = {row["step"]: row["status"] for row in summary["steps"]}
    assert {name.split(":")[0] for name in status} == set(STEPS)
    assert {name for name, s in status.items() if s != "ok"} == {"pytest", "search_ray"}
    archs = ("full+dense", "sliding+moe_topk", "span+moe_dynamic")
    assert {f"{step}:{a}" for step in ("agree", "fit", "kept", "fit_agree") for a in archs} <= set(status)
    detail = {row["step"]: row.get("detail") for row in summary["steps"]}
    assert detail["search_local"]["states"] == ["complete"] * 4
    assert detail["kept:span+moe_dynamic"]["same_classes"] == 1.0
    tables = (tmp_path / "tables.txt").read_text()
    assert "MoE fwd+bwd" in tables and "attention fwd+bwd" in tables
    assert len(detail["bench_attention"]["rows"]) == 2 * 2 * 3     # causal x T x kinds
