"""``dynas search`` / ``dynas resume`` end to end: real ``trainers.fit`` on Ray Tune.

A tiny experiment (Split-Digits in 2 experiences of 5 classes, 4 tokens of 16 pixels,
10 steps per experience, one-layer models) keeps a trial to about a second once a
worker has imported torch; most of each test is Ray and worker start-up.
"""
from __future__ import annotations

import json
import socket

import pytest

from dynas.analysis.cli import main
from dynas.controllers.kept_weights import read_index
from dynas.controllers.records import POLICY_STATE_FILE, RECORDS_FILE, RUN_FILE, iter_records
from dynas.controllers.runs import resume_search, run_search
from dynas.controllers.records import trained_count
from dynas.search_space.errors import DynasError

TINY = """
space:
  layers: [1]
  d_model: [16, 32]
  layer:
    attention:
      - {kind: full, heads: [2]}
      - {kind: sliding_window, heads: [2, 4], window: [2]}
    ffn:
      - {kind: dense, expansion: [2]}
      - {kind: moe, experts: [2], top_k: [1], expansion: 2}
task:
  name: split_digits
  options: {classes_per_experience: 5, patch: 4}
training:
  steps_per_experience: 10
  batch_size: 32
search:
  strategy: random
  trials: 3
  concurrent: 2
  max_failures: 0
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def check_run(run_dir, trials, strategy, experiences=2):
    records = list(iter_records(run_dir))
    trained = [r for r in records if r.cached_from is None and r.repeat_of is None]
    assert len(trained) == len({r.arch_id for r in trained}) == trials
    assert all(r.policy == strategy for r in records)
    for r in trained:
        if r.state == "pruned":                # ASHA: never before two experiences
            assert 2 <= r.experiences_done < experiences and len(r.acc_matrix) == r.experiences_done
            continue
        assert r.state == "complete", r.reason
        assert r.experiences_done == experiences and len(r.acc_matrix) == experiences and r.trial_id
        assert 0.0 <= r.metrics["final_avg_accuracy"] <= 1.0 and r.metrics["flops"] > 0
        assert r.objectives == [r.metrics["final_avg_accuracy"], r.metrics["flops"]]
    check_kept_weights(run_dir, [r for r in trained if r.state == "complete"])
    run = json.loads((run_dir / RUN_FILE).read_text())
    assert run["strategy"] == strategy and run["trials"] == trials and run["runner"] == "ray"
    assert (run_dir / "experiment.yaml").is_file() and (run_dir / POLICY_STATE_FILE).is_file()
    return records


def check_kept_weights(run_dir, complete):
    """Every complete trial's model reached the driver's storage; the keep rule (front +
    top 3) left at least min(3, n) of them, and the index lists exactly those on disk."""
    kept = read_index(run_dir)
    assert len(kept) >= min(3, len(complete))
    for r in complete:
        assert r.weights["path"].startswith("ray/") and r.weights["bytes"] > 0
        assert (run_dir / r.weights["path"] / "weights.safetensors").is_file() == (str(r.proposal_id) in kept)


# --- user errors first: they need no Ray (and must not find one running) -----------------
def test_bad_address_is_one_line_and_exit_2(tiny, tmp_path, capsys):
    with socket.socket() as s:                 # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["search", str(tiny), "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path),
                 "--no-report"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"dynas: error: cannot connect to Ray at 127.0.0.1:{port}:")
    assert not any(tmp_path.glob("tiny-*")), "no run directory for a search that never started"


def test_unknown_strategy_exit_2(tiny, capsys):
    assert main(["search", str(tiny), "--strategy", "bogus"]) == 2
    assert "--strategy: unknown strategy 'bogus'; known strategies: random" in capsys.readouterr().err
    with pytest.raises(DynasError, match="unknown strategy 'bogus'"):
        run_search(tiny, strategy="bogus")


def test_refuses_a_non_empty_run_dir(tiny, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / RUN_FILE).write_text("{}")
    code = main(["search", str(tiny), "--storage", str(tmp_path), "--name", "taken", "--no-report"])
    assert code == 2 and "use `dynas resume" in capsys.readouterr().err


@pytest.mark.slow
def test_search_random_with_its_own_private_ray(tiny, tmp_path, capsys):
    import ray

    assert not ray.is_initialized()
    code = main(["search", str(tiny), "--storage", str(tmp_path), "--name", "r", "--no-report"])
    assert code == 0 and not ray.is_initialized(), "the private instance is shut down"
    captured = capsys.readouterr()
    assert captured.out.strip().endswith(str(tmp_path / "r"))
    records = check_run(tmp_path / "r", 3, "random")
    # one progress line per finished trial, k of N; no Tune banner at the default level
    lines = [ln for ln in captured.out.splitlines() if ln.startswith("[")]
    assert [ln.split()[0] for ln in lines] == ["[1/3]", "[2/3]", "[3/3]"]
    assert all(" | best: " in ln for ln in lines) and "Configuration for experiment" not in captured.out
    # each trained trial's curves outlive it, in the run directory, by proposal id
    from dynas.controllers.tracking import curve_name
    from dynas.trainers.curves import read_scalars

    for r in (r for r in records if r.cached_from is None):
        curves = read_scalars(tmp_path / "r" / "curves" / curve_name(r.proposal_id, r.arch_id))
        assert [s for s, _ in curves["train/loss"]] == [10, 20], r.proposal_id   # log_every 10
        assert "hparams/final_avg_accuracy" in curves or r.state != "complete"
    search = read_scalars(tmp_path / "r" / "curves" / "search")
    assert [s for s, _ in search["best/final_avg_accuracy"]] == [1, 2, 3]
    assert not list((tmp_path / "r" / "ray").rglob("events.out.tfevents.*")), "no second copy by Tune"
    from dynas.trainers.predict import load_model
    from dynas.trainers.tasks import build_task
    from dynas.search_space.settings import TaskSettings

    best = max((r for r in records if r.weights), key=lambda r: r.metrics["final_avg_accuracy"])
    predictor = load_model(tmp_path / "r" / best.weights["path"])
    task = build_task(TaskSettings("split_digits", {"classes_per_experience": 5, "patch": 4}), seed=0)
    exp = task.experiences[-1]
    correct = int((predictor.predict(exp.raw_test).classes == exp.test.tensors[1]).sum())
    assert correct / len(exp.raw_test) == pytest.approx(best.test_acc_matrix[-1][-1], abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["tpe", "ppo"])
def test_search_each_strategy(tiny, tmp_path, ray_local, strategy):
    # one worker: it imports torch once and trains the trials in turn (reuse_actors)
    run_dir = run_search(tiny, strategy=strategy, trials=3, concurrent=1, storage=tmp_path, verbose=0)
    assert run_dir.parent == tmp_path and run_dir.name.startswith(f"tiny-{strategy}-")
    check_run(run_dir, 3, strategy)


@pytest.mark.slow
def test_search_nsga2_under_asha(tmp_path, ray_local):
    """ASHA on 4 experiences (grace 2): the scheduler may stop a trial after 2, never before."""
    path = tmp_path / "asha.yaml"
    path.write_text(TINY.replace("classes_per_experience: 5", "classes_per_experience: 3")
                    .replace("strategy: random", "strategy: nsga2\n  scheduler: asha"))
    run_dir = run_search(path, trials=4, concurrent=1, storage=tmp_path, verbose=0)
    check_run(run_dir, 4, "nsga2", experiences=4)


@pytest.mark.slow
def test_resume_after_a_partial_run_gives_exactly_the_requested_trials(tiny, tmp_path, ray_local):
    run_dir = run_search(tiny, trials=2, concurrent=1, storage=tmp_path, name="p", verbose=0)
    # Make it look killed after 2 of 4: the run asked for 4, and the crash tore a line.
    run = json.loads((run_dir / RUN_FILE).read_text())
    (run_dir / RUN_FILE).write_text(json.dumps({**run, "trials": 4}))
    with open(run_dir / RECORDS_FILE, "a") as fh:
        fh.write('{"proposal_id": 99, "arch_id": "torn')
    resume_search(run_dir, verbose=0)
    records = check_run(run_dir, 4, "random")
    assert 99 not in {r.proposal_id for r in records}
    assert (run_dir / "ray" / "resume-1").is_dir()
    # A finished run is extended by --extra-trials, through the CLI.
    assert main(["resume", str(run_dir), "--extra-trials", "1", "--verbose", "0", "--no-report"]) == 0
    check_run(run_dir, 5, "random")
    ids = [r.proposal_id for r in iter_records(run_dir)]
    assert len(ids) == len(set(ids))
    assert trained_count(list(iter_records(run_dir))) == 5
    # Seed repeats of the 2 best through Ray like any trial; a rerun trains nothing more.
    for _ in range(2):
        assert main(["confirm", str(run_dir), "--top", "2", "--seeds", "1", "--verbose", "0",
                     "--no-report"]) == 0
    records = list(iter_records(run_dir))
    repeats = [r for r in records if r.repeat_of is not None]
    originals = {r.proposal_id: r for r in records if r.repeat_of is None and r.cached_from is None}
    assert len(repeats) == 2 and all(r.is_confirmation and r.trial_id for r in repeats)
    for r in repeats:
        first = originals[r.repeat_of]
        assert r.state == "complete" and r.arch_id == first.arch_id and r.train_seed == 1
        assert r.acc_matrix != first.acc_matrix, "a fresh training seed gives other numbers"
    check_run(run_dir, 5, "random")


def flaky_trial(config, spec, marker):
    """``run_trial`` whose first attempt dies right after reporting experience 1 (as a
    lost worker would); the retry notes what ``fit`` was given."""
    import dynas.trainers.fitting as fit_module
    from dynas.controllers.tune.trainable import run_trial

    real = fit_module.fit

    class Crash:
        def on_experience_end(self, progress):
            raise RuntimeError("worker lost")

    def fit(arch, task, cfg, callbacks=(), **kwargs):
        if not marker.exists():
            marker.write_text("crashed once")
            return real(arch, task, cfg, [*callbacks, Crash()], **kwargs)
        saved = sorted(p.name for p in kwargs["checkpoint_dir"].iterdir())
        marker.with_suffix(".retry").write_text(json.dumps({"resume": kwargs["resume"], "saved": saved}))
        return real(arch, task, cfg, callbacks, **kwargs)

    fit_module.fit = fit
    try:
        run_trial(config, spec)
    finally:
        fit_module.fit = real


@pytest.mark.slow
def test_a_retried_trial_continues_from_its_checkpoint(tiny, tmp_path, ray_local):
    from dynas.controllers.policies import make_policy
    from dynas.controllers.tune.executor import tune_search
    from dynas.controllers.tune.trainable import TrialSpec
    from dynas.controllers.driver import SearchDriver
    from dynas.controllers.tune.searcher import PolicySearcher
    from dynas.search_space.experiment import load_experiment

    exp = load_experiment(tiny)
    policy = make_policy("random", exp.space, exp.search.objectives, seed=0)
    searcher = PolicySearcher(SearchDriver(policy, tmp_path, budget=1))
    marker = tmp_path / "marker"
    tune_search(searcher, flaky_trial, run_dir=tmp_path, name="flaky", concurrent=1, max_failures=1,
                verbose=0, spec=TrialSpec(exp.task, exp.training), marker=marker)
    retry = json.loads(marker.with_suffix(".retry").read_text())
    assert retry["resume"] is True and "resume.pt" in retry["saved"]
    (record,) = iter_records(tmp_path)
    assert record.state == "complete" and record.experiences_done == 2 and len(record.acc_matrix) == 2
