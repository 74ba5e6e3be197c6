"""The tutorial (``docs/tutorial.py``, a notebook in jupytext's percent format) runs end
to end as a user runs it: a fresh Python process, in an empty folder, through the
Python API with ``runner="local"``, at its tiny size (``DYNAS_TUTORIAL_TINY=1``).

It must leave an ordinary run directory: the search's trials plus the resumed ones,
a report, and a kept model that predicted on raw digits. A tutorial that breaks when
the API changes fails here, not in a reader's notebook.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.py"

pytestmark = pytest.mark.slow


def test_the_tutorial_runs_end_to_end_at_tiny_size(tmp_path):
    env = {**os.environ, "DYNAS_TUTORIAL_TINY": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(TUTORIAL)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 1, runs
    run_dir = runs[0]
    records = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    complete = [r for r in records if r["state"] == "complete" and not r.get("baseline")]
    assert len(complete) >= 4                      # 3 searched + 1 resumed (TINY sizes)
    assert json.loads((run_dir / "run.json").read_text())["trials"] == 4
    assert (run_dir / "report" / "report.md").is_file()
    assert "predicted: [" in done.stdout
    assert str(run_dir) in done.stdout.splitlines()[-1]


def test_the_tutorial_is_a_percent_format_notebook():
    """jupytext reads ``# %%`` cells; the header names the format, so
    ``jupytext --to notebook docs/tutorial.py`` needs no options."""
    text = TUTORIAL.read_text()
    assert "format_name: percent" in text
    assert text.count("\n# %% [markdown]") >= 5 and text.count("\n# %%\n") >= 5
