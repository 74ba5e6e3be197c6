# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # dynas from Python: search, pick, use, resume
#
# This tutorial drives the quickstart experiment (`examples/quickstart.yaml`) from
# Python, end to end: a search, its records and Pareto front, a pick, the report, the
# picked model predicting on raw images, and a resumed search. Every call is the
# command line's own code path, so the run it makes is an ordinary run directory:
# `dynas report`, `dynas export` and `dynas resume` work on it too.
#
# It runs in this process (`runner="local"`, no Ray). Open it as a notebook with
# `jupytext --to notebook docs/tutorial.py` (`pip install jupytext`), or run it as a
# script: `python docs/tutorial.py`. With `DYNAS_TUTORIAL_TINY=1` it shrinks to a
# one-minute run (the test suite runs it that way).

# %%
import os
from pathlib import Path

import dynas

TINY = os.environ.get("DYNAS_TUTORIAL_TINY") == "1"
# The experiment file ships with the repository (the repository root is the dynas package).
EXPERIMENT = Path(dynas.__file__).resolve().parent / "examples" / "quickstart.yaml"
STORAGE = Path("runs")                    # run directories land here

# Settings by dotted key path, checked exactly as if the file held them.
SETTINGS = {"training.steps_per_experience": 30}
TRIALS, EXTRA_TRIALS = 6, 2
if TINY:                                   # 2 experiences of 5 digits, 4 tokens, 10 steps each
    SETTINGS = {"training.steps_per_experience": 10,
                "task.options.classes_per_experience": 5, "task.options.patch": 4}
    TRIALS, EXTRA_TRIALS = 3, 1

# %% [markdown]
# ## Search
#
# `dynas.search` is `dynas search`: it writes a run directory and returns a `Run`.
# A policy (here the file's `random`) proposes architectures; each is trained on the
# Split-Digits stream with replay, and its validation accuracy and FLOPs are told back.

# %%
run = dynas.search(EXPERIMENT, settings=SETTINGS, trials=TRIALS, runner="local",
                   storage=STORAGE, verbose=0)
print(run)

# %% [markdown]
# ## Records and the Pareto front
#
# `run.records` is one row per trial: decisions (`param.*`), validation metrics, their
# held-out `test.*` twins, cost, state. The front is computed on validation values only.

# %%
records = run.records
print(records[["proposal_id", "state", "final_avg_accuracy", "test.final_avg_accuracy", "flops"]])
front = run.front()
print(f"{len(front)} of {len(records)} trials on the front")

# %% [markdown]
# ## Pick one, and read its test numbers
#
# `knee` is the front's best trade-off; `best-accuracy`, `max-flops=2M`, a trial id or an
# `arch_id` work too. `values` picked it; `test_values` are shown, never used to pick.

# %%
knee = run.pick("knee")
print(knee)
print("validation:", knee.values["final_avg_accuracy"], " test:", knee.test_values["final_avg_accuracy"])

# %% [markdown]
# ## The report
#
# The same `report.md` and figures as `dynas report RUN`.

# %%
report = run.report()
print(report, sorted(p.name for p in report.parent.glob("*.png")))

# %% [markdown]
# ## Use the picked model
#
# The search kept the front's weights (`search.keep_weights: front`). The model folder
# holds the preprocessing fitted on the training split, so `predict` takes raw 8x8
# digit images.

# %%
from sklearn.datasets import load_digits

digits = load_digits()
model = run.load_model("knee")
prediction = model.predict(digits.images[:10])
print("predicted:", prediction.classes.tolist())
print("true:     ", digits.target[:10].tolist())

# %% [markdown]
# ## Resume
#
# A run directory holds the whole state of a search; `dynas.resume` (or
# `dynas resume RUN_DIR` on the command line) continues it, here by a few more trials.

# %%
run = dynas.resume(run, extra_trials=EXTRA_TRIALS, verbose=0)
print(run)
assert len(run.records[run.records["state"] == "complete"]) >= TRIALS

# %% [markdown]
# `run.dir` is the run directory: `dynas.load_run(run.dir)` comes back to it later, and
# `dynas report`, `dynas export` and `dynas confirm` take it on the command line.

# %%
print(run.dir)
