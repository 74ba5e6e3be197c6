"""Reference baselines (``search.baselines``): resolved and checked before a search,
trained with the search's own settings, recorded, never told to a policy, kept off the
front and shown in the report."""
from __future__ import annotations

import json

import pytest

from dynas.controllers.run.baselines import resolve_baselines
from dynas.controllers.runs import run_local_experiment
from dynas.controllers.records import iter_records, trained_count
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import load_experiment
from dynas.search_space.reference import MLPReference

DIGITS = TaskShape(seq_len=16, num_classes=10, input_dim=4, image_side=8)
ARCH = ArchConfig(16, (LayerConfig(AttentionConfig("identity", 1), FFNConfig("dense", 1)),),
                  tokens="whole")


def test_names_and_files_resolve_relative_to_the_experiment(tmp_path):
    ARCH.save(tmp_path / "refs" / "arch.json")
    refs = resolve_baselines(("mlp:32x2", "refs/arch.json"), DIGITS, tmp_path / "exp.yaml")
    assert refs == [("mlp:32x2", MLPReference(32, 2)), ("refs/arch.json", ARCH)]


@pytest.mark.parametrize("entry,message", [
    ("mlp:32", "search.baselines[0]: unknown reference model 'mlp:32'"),
    ("missing.json", "search.baselines[0]: no such architecture file"),
    ("", "search.baselines[0]: expected mlp:WIDTHxDEPTH or the path"),
])
def test_bad_entries_name_the_key(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_baselines((entry,), DIGITS, tmp_path / "exp.yaml")


def test_a_baseline_the_task_cannot_take_is_refused_up_front(tmp_path):
    tokens = TaskShape(seq_len=8, num_classes=4, vocab_size=6, per_token=True)
    with pytest.raises(ConfigError, match=r"search.baselines\[0\]: mlp:8x1 does not fit this task"):
        resolve_baselines(("mlp:8x1",), tokens, None)
    with pytest.raises(ConfigError, match="lists one baseline twice"):
        resolve_baselines(("mlp:8x1", "mlp:8x1"), DIGITS, None)


@pytest.mark.slow
def test_baselines_are_trained_recorded_and_never_told(tmp_path):
    """Both architectures of the space are also baselines: a resumed search that had
    seen the baseline records would answer its next proposal from them, untrained."""
    ARCH.save(tmp_path / "whole.json")
    ArchConfig(16, ARCH.layers).save(tmp_path / "task.json")
    (tmp_path / "exp.yaml").write_text(json.dumps({
        "space": {"layers": 1, "d_model": 16, "tokens": ["task", "whole"],
                  "layer": {"attention": {"kind": "identity"}, "ffn": {"kind": "dense", "expansion": 1}}},
        "task": {"name": "split_digits"},
        "training": {"steps_per_experience": 2, "batch_size": 16, "device": "cpu"},
        "search": {"strategy": "random", "trials": 2,
                   "baselines": ["mlp:16x1", "whole.json", "task.json"]}}))
    experiment = load_experiment(tmp_path / "exp.yaml")
    run = tmp_path / "run"
    run_local_experiment(experiment, run, trials=1)
    run_local_experiment(experiment, run, trials=2, resume=True)   # baselines not retrained
    records = list(iter_records(run))
    refs = [r for r in records if r.baseline]
    assert [(r.baseline, r.proposal_id, r.policy, r.objectives) for r in refs] == \
        [("mlp:16x1", -1, "baseline", None), ("whole.json", -2, "baseline", None),
         ("task.json", -3, "baseline", None)]
    assert all(r.state == "complete" and len(r.acc_matrix) == 5 for r in refs)
    searched = [r for r in records if not r.baseline]
    assert trained_count(records) == 2
    assert len({r.arch_id for r in searched if r.cached_from is None}) == 2
    assert all(r.cached_from is None or r.cached_from >= 0 for r in searched)   # none from a baseline

    from dynas.analysis.load import baselines, complete, load_runs
    from dynas.analysis.report import write_report

    df = load_runs(run)
    assert set(baselines(df)["baseline"]) == {"mlp:16x1", "whole.json", "task.json"}
    assert len(complete(df)) == 2
    report = write_report(run).read_text()
    assert "## Reference baselines" in report and "mlp:16x1" in report
