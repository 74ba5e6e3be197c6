"""``dynas space validate | describe | sample``: handlers, then the real ``dynas`` root."""
import argparse
import json
import re
from pathlib import Path

import pytest

from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.commands import register
from dynas.search_space.errors import DynasError, InfeasibleError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUICKSTART = EXAMPLES / "quickstart.yaml"
PLAIN = EXAMPLES / "plain_space.yaml"
SHAPE = TaskShape(seq_len=16, num_classes=10, input_dim=4)
SEEN_TASKS = []


def _shape_of(task):
    """The resolver the CLI root hands in (trainers knows tasks); records what it saw."""
    SEEN_TASKS.append(task.name)
    return SHAPE


def run(argv):
    parser = argparse.ArgumentParser(prog="dynas")
    register(parser.add_subparsers(dest="command", required=True), task_shape_fn=_shape_of)
    args = parser.parse_args(argv)
    return args.handler(args)


def test_validate_prints_decisions_and_size(capsys):
    SEEN_TASKS.clear()
    assert run(["space", "validate", str(QUICKSTART)]) == 0
    assert capsys.readouterr().out == f"OK: {QUICKSTART}: 22 decisions, space size 78804, 80 kind combinations built\n"
    assert SEEN_TASKS == ["split_digits"]  # the task is validated too


def test_validate_checks_a_budget_can_be_met(tmp_path):
    text = QUICKSTART.read_text().replace("  concurrent: 2\n", "  concurrent: 2\n  budget: {max_flops: 10}\n")
    path = tmp_path / "tight.yaml"
    path.write_text(text)
    with pytest.raises(InfeasibleError, match=r"nothing feasible in 200 samples: e\.g\. flops .* > max_flops 10"):
        run(["space", "validate", str(path)])


def test_validate_reports_config_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("space: {decisions: {a: []}}\n")
    with pytest.raises(DynasError, match=r"bad\.yaml: space\.decisions\.a: empty list"):
        run(["space", "validate", str(path)])


def test_describe_prints_table_size_and_cost_range(capsys):
    assert run(["space", "describe", str(QUICKSTART), "--samples", "50", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"{QUICKSTART}: ArchSpace, task split_digits"
    assert re.match(r"decision\s+options\s+condition$", lines[1])
    assert re.search(r"^layer1\.ffn\.moe\.top_k\s+1, 2\s+layers > 1 and layer1\.ffn == moe$", out, re.M)
    assert re.search(r"^layers\s+1, 2\s+-$", out, re.M)
    assert "22 decisions, space size 78804" in out
    assert "cost over 50 sampled architectures (seq_len 16, seed 1):" in out
    for name in ("flops", "params", "active_params"):
        m = re.search(rf"^  {name}\s+min\s+(\S+)\s+median\s+(\S+)\s+max\s+(\S+)$", out, re.M)
        assert m, name
        low, mid, high = (float(v) for v in m.groups())
        assert 0 < low <= mid <= high


def test_describe_plain_space_has_no_cost(capsys):
    assert run(["space", "describe", str(PLAIN)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^width\s+16\.\.128 step 16\s+-$", out, re.M)
    assert "5 decisions, space size 576" in out and "cost over" not in out


def test_sample_prints_and_saves_reproducible_archs(capsys, tmp_path):
    assert run(["space", "sample", str(QUICKSTART), "--n", "3", "--seed", "7", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ids = re.findall(r"^\[\d\] arch_id ([0-9a-f]{12})  flops \S+  params \S+$", out, re.M)
    assert len(ids) == 3 and "d_model=" in out
    for arch_id in ids:
        assert ArchConfig.load(tmp_path / f"{arch_id}.json").arch_id == arch_id
    assert run(["space", "sample", str(QUICKSTART), "--n", "3", "--seed", "7"]) == 0
    again = re.findall(r"arch_id ([0-9a-f]{12})", capsys.readouterr().out)
    assert again == ids


def test_sample_plain_space_saves_assignments(capsys, tmp_path):
    assert run(["space", "sample", str(PLAIN), "--n", "2", "--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("*.json"))
    assert files and {"optimizer", "width", "epochs"} <= set(json.loads(files[0].read_text()))


# --- through the real `dynas` entry point (needs every package's commands module) ---
def test_cli_space_validate_and_describe(capsys):
    from dynas.analysis.cli import main

    assert main(["space", "validate", str(QUICKSTART)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {QUICKSTART}: 22 decisions, space size 78804")
    assert main(["space", "describe", str(QUICKSTART), "--samples", "20"]) == 0
    assert "cost over 20 sampled architectures" in capsys.readouterr().out


def test_cli_user_error_is_one_line_and_exit_2(capsys, tmp_path):
    from dynas.analysis.cli import main

    path = tmp_path / "broken.yaml"
    path.write_text("space: [1,\n")
    assert main(["space", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dynas: error: {path}: invalid YAML at line ") and err.count("\n") == 1
