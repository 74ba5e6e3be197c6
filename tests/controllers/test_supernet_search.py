"""``search.evaluation: supernet``: one supernet trained once, every candidate scored
with inherited weights through the same driver, the best re-trained stand-alone and
kept apart in records and report; in-process and on Ray."""
from __future__ import annotations

import json

import pytest

from dynas.analysis.report import write_report
from dynas.controllers.runs import run_local_experiment
from dynas.controllers.records import iter_records
from dynas.controllers.runs import run_search
from dynas.controllers.run.supernet import supernet_path
from dynas.search_space import names
from dynas.search_space.experiment import load_experiment

EXPERIMENT = """
space:
  layers: [1, 2]
  d_model: [16, 32]
  layer:
    attention:
      - {kind: full, heads: [2]}
      - {kind: identity}
    ffn:
      - {kind: dense, expansion: [2]}
      - {kind: moe, experts: [2], top_k: [1], expansion: 1, balance: [bias]}
task:
  name: split_digits
  options: {classes_per_experience: 5, patch: 4}
training:
  steps_per_experience: 6
  batch_size: 32
  device: cpu
search:
  strategy: random
  trials: 4
  concurrent: 2
  max_failures: 0
  evaluation: supernet
  supernet: {factor: 1.0}
  confirm: {top: 3, seeds: 1}
"""


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "sn.yaml"
    path.write_text(EXPERIMENT)
    return path


def check(run_dir, trials=4, top=3):
    records = list(iter_records(run_dir))
    firsts = [r for r in records if r.repeat_of is None and r.cached_from is None]
    repeats = [r for r in records if r.repeat_of is not None]
    assert len(firsts) == trials and all(r.evaluation == "inherited" for r in firsts)
    for r in firsts:                    # what the policy was told is the inherited score
        assert r.state == "complete", r.reason
        assert r.objectives == [r.metrics[names.FINAL_AVG_ACCURACY], r.metrics[names.FLOPS]]
        assert len(r.acc_matrix) == len(r.test_acc_matrix) == 2
    assert len(repeats) == top and all(r.evaluation == "standalone" and r.is_confirmation for r in repeats)
    assert {r.repeat_of for r in repeats} <= {r.proposal_id for r in firsts}
    assert supernet_path(run_dir).is_file()
    report = write_report(run_dir).read_text()
    assert "## Supernet: inherited vs stand-alone" in report
    section = report.split("## Supernet: inherited vs stand-alone")[1]
    assert "Kendall's tau between the two rankings" in section
    assert sum(line.startswith("| ") for line in section.split("##")[0].splitlines()) == top + 1   # + header
    return records


def test_an_in_process_supernet_search_scores_inherited_and_confirms_standalone(experiment, tmp_path):
    run_dir = tmp_path / "run"
    run_local_experiment(load_experiment(experiment), run_dir)
    check(run_dir)
    first = supernet_path(run_dir).stat().st_mtime_ns
    run_local_experiment(load_experiment(experiment), run_dir, trials=5, resume=True)
    assert supernet_path(run_dir).stat().st_mtime_ns == first          # reused, not retrained
    records = list(iter_records(run_dir))
    assert sum(r.repeat_of is None and r.cached_from is None for r in records) == 5


def test_a_ray_supernet_search_trains_it_in_one_trial(experiment, tmp_path):
    run_dir = run_search(experiment, storage=tmp_path / "runs", name="sn")
    check(run_dir)
    assert (run_dir / "ray" / "supernet").is_dir()          # the supernet's own Tune run
    run = json.loads((run_dir / "run.json").read_text())
    assert run["runner"] == "ray"
