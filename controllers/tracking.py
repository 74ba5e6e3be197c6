"""What a search shows while it runs, and what it leaves in the run directory to watch.

Run directory layout (next to ``trials.jsonl``)::

    curves/p0003-<arch_id>/   one trial's training curves (TensorBoard event files that
                       ``trainers.fit`` writes, ``trainers.curves``), by proposal id and
                       architecture, with its decisions and results in TensorBoard's
                       HPARAMS tab (``TrialHParams``)
    curves/search/     the search itself: each objective per finished trial and the
                       best so far (step = trial number, counted as the progress lines)
    errors/p0004.txt   a failed trial's traceback (the terminal gets one line)
    mlflow.db          with ``search.loggers: [mlflow]``: one MLflow run per trial

so ``tensorboard --logdir RUN_DIR`` shows every trial and the search side by side.

Verbosity levels (``dynas search --quiet`` / default / ``--verbose`` / ``--verbose 3``):
QUIET prints only the closing summary; NORMAL one line per finished trial (k of N,
its objectives or why it failed, the best so far per objective, an ETA); VERBOSE adds
Ray Tune's status table; DEBUG adds the workers' logs and Tune's own tracebacks.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO

from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import Objective

from .records import TrialRecord, trained_count

QUIET, NORMAL, VERBOSE, DEBUG = 0, 1, 2, 3
CURVES_DIR, SEARCH_CURVES, ERRORS_DIR, MLFLOW_DB = "curves", "search", "errors", "mlflow.db"
TUNE_ERROR_LOGGER = "ray.tune.execution.tune_controller"   # logs each trial's traceback


def trial_name(proposal_id: int) -> str:
    """A trial's name in lines and under ``errors/`` (sorts in ask order)."""
    return f"p{int(proposal_id):04d}"


def curve_name(proposal_id: int, arch_id: str | None = None, train_seed: int | None = None) -> str:
    """A trial's TensorBoard run under ``curves/``: ``p0003-<arch_id>`` (trial, then
    architecture; ``-seed4`` for a seed repeat), so TensorBoard's run list says which
    architecture each curve is and still sorts in ask order."""
    name = trial_name(proposal_id) + (f"-{arch_id}" if arch_id else "")
    return name + (f"-seed{int(train_seed)}" if train_seed is not None else "")


def tune_verbosity(level: int) -> int:
    """Ray Tune's ``verbose`` (and ``cluster.ray_session``'s) for a dynas level."""
    return max(0, min(3, int(level) - 1))


def write_traceback(run_dir: str | Path, proposal_id: int, text: str) -> Path:
    """Keep a failed trial's traceback in ``errors/`` (terminal colours removed);
    returns the file."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    path = Path(run_dir) / ERRORS_DIR / f"{trial_name(proposal_id)}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path


class _Tally:
    """Trials finished (the driver's count: trained, failed or pruned; duplicates not)
    and the best complete value of each objective, with the trial that holds it."""

    def __init__(self, objectives: Sequence[Objective], records: Iterable[TrialRecord]):
        self.objectives = tuple(objectives)
        records = list(records)
        self.done = trained_count(records)
        self.best: dict[str, tuple[float, int]] = {}
        for record in records:
            self.update(record)

    def update(self, record: TrialRecord) -> bool:
        """Count a record; False for a reused duplicate or a seed repeat (not a new
        finished trial: ``records.trained_count``)."""
        if record.cached_from is not None or getattr(record, "repeat_of", None) is not None:
            return False
        if record.state == "complete":
            for o in self.objectives:
                value = record.metrics.get(o.metric)
                if value is None or not math.isfinite(value):
                    continue
                old = self.best.get(o.metric)
                better = old is None or (value > old[0] if o.direction == "max" else value < old[0])
                if better:
                    self.best[o.metric] = (float(value), record.proposal_id)
        return True


class Progress(_Tally):
    """A record listener (``SearchDriver(listeners=...)``) printing one line per
    finished trial; ``records`` are those already in the run (a resume)."""

    def __init__(self, objectives: Sequence[Objective], target: int, run_dir: str | Path, *,
                 records: Iterable[TrialRecord] = (), level: int = NORMAL, out: TextIO | None = None,
                 clock=time.monotonic):
        super().__init__(objectives, records)
        self.target, self.run_dir, self.level = int(target), Path(run_dir), level
        self.out, self.clock = out, clock
        self.first, self.started = self.done, clock()

    def __call__(self, record: TrialRecord) -> None:
        if not self.update(record):
            if self.level >= VERBOSE and record.cached_from is not None:
                self._print(f"{trial_name(record.proposal_id)} repeats {trial_name(record.cached_from)}: "
                            "outcome reused, not trained")
            elif self.level >= VERBOSE:
                self._print(f"seed repeat of {trial_name(record.repeat_of)} {record.state}")
            return
        self.done += 1
        if self.level >= NORMAL:
            self._print(self.line(record))

    def line(self, record: TrialRecord) -> str:
        width = len(str(self.target))
        head = f"[{self.done:>{width}}/{self.target}] {trial_name(record.proposal_id)} {record.state}"
        if record.state == "complete":
            head += "  " + "  ".join(f"{o.metric} {number(record.metrics.get(o.metric))}"
                                     for o in self.objectives)
        elif record.reason:
            head += f": {_clip(record.reason)}"
            tb = self.run_dir / ERRORS_DIR / f"{trial_name(record.proposal_id)}.txt"
            if tb.is_file():
                head += f" (traceback: {tb.relative_to(self.run_dir)})"
        best = ", ".join(f"{m} {number(v)} ({trial_name(p)})" for m, (v, p) in self.best.items())
        return f"{head} | best: {best or 'none yet'} | {self.eta()}"

    def eta(self) -> str:
        new, left = self.done - self.first, max(0, self.target - self.done)
        if left == 0:
            return "last trial"
        if new <= 0:
            return "ETA ?"
        return f"ETA {duration((self.clock() - self.started) / new * left)}"

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)


class ObjectiveCurves(_Tally):
    """A record listener writing ``curves/search``: ``objective/<metric>`` of each
    complete trial and ``best/<metric>`` so far, at step = trials finished."""

    def __init__(self, objectives: Sequence[Objective], run_dir: str | Path,
                 records: Iterable[TrialRecord] = ()):
        super().__init__(objectives, records)
        self.path = Path(run_dir) / CURVES_DIR / SEARCH_CURVES
        self._writer = None

    def __call__(self, record: TrialRecord) -> None:
        if not self.update(record):
            return
        self.done += 1
        values = {f"objective/{o.metric}": record.metrics[o.metric] for o in self.objectives
                  if record.state == "complete" and o.metric in record.metrics}
        values |= {f"best/{m}": v for m, (v, _) in self.best.items()}
        writer = self.writer()
        for tag, value in values.items():
            writer.add_scalar(tag, float(value), global_step=self.done)
        writer.flush()

    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TrialHParams:
    """A record listener writing each trained trial's decisions and final metrics into
    its own TensorBoard run (``curves/<curve_name>``) as an HParams summary, so
    TensorBoard's HPARAMS tab lists every trial with its choices and results
    (``hparams/<metric>``); cached duplicates trained nothing and get none."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir) / CURVES_DIR

    def __call__(self, record: TrialRecord) -> None:
        if record.cached_from is not None or record.state != "complete":
            return
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        decisions = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                     for k, v in sorted(record.params.items())}
        decisions |= {"arch_id": record.arch_id, "trial": int(record.proposal_id)}
        metrics = {f"hparams/{k}": float(v) for k, v in sorted(record.metrics.items())
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        name = curve_name(record.proposal_id, record.arch_id, record.train_seed if record.repeat_of is not None
                          else None)
        writer = SummaryWriter(str(self.root / name))
        try:
            for summary in hparams(decisions, metrics):
                writer.file_writer.add_summary(summary)
            for tag, value in metrics.items():
                writer.add_scalar(tag, value)
        finally:
            writer.close()


# --- Ray Tune's side ----------------------------------------------------------------
def check_loggers(loggers: Sequence[str]) -> None:
    """``search.loggers`` that cannot work stop the search before it starts."""
    if "mlflow" in loggers:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError("search.loggers", "mlflow is not installed; `pip install mlflow` "
                              "(or `pip install dynas[mlflow]`) or remove it from the list") from None


def tune_callbacks(loggers: Sequence[str], run_dir: str | Path, experiment_name: str) -> list[Any]:
    """Tune's CSV/JSON result files (Tune's own analysis reads them) and, when asked,
    Ray's MLflow callback: one MLflow run per trial in ``RUN_DIR/mlflow.db`` unless
    ``MLFLOW_TRACKING_URI`` names a server. Tune's TensorBoard copy of the reports is
    left out (``tune_output``): ``curves/`` has the same values per trial."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    callbacks: list[Any] = [CSVLoggerCallback(), JsonLoggerCallback()]
    if "mlflow" in loggers:
        import os

        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_uri(run_dir)
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment_name,
                                              save_artifact=False))
    return callbacks


def mlflow_uri(run_dir: str | Path) -> str:
    """The run's own MLflow store: SQLite (MLflow 3 refuses its old ``mlruns/`` folder
    store unless told otherwise); ``mlflow ui --backend-store-uri`` takes it as is."""
    return f"sqlite:///{(Path(run_dir).resolve() / MLFLOW_DB).as_posix()}"


@contextlib.contextmanager
def tune_output(level: int) -> Iterator[None]:
    """Tune without its default loggers (``tune_callbacks`` passes CSV and JSON) and,
    below VERBOSE, without its experiment banner (Tune's newer console output prints
    it whatever ``verbose`` says; its classic one stays silent at ``verbose=0``) and
    without its warning that experiment snapshots come often (they do by design: each
    experience checkpoints, ``KEEP_CHECKPOINTS``; the warning would bury the progress lines)."""
    import os

    wanted = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    if level < VERBOSE:
        wanted["RAY_AIR_NEW_OUTPUT"] = "0"
        wanted["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] = "0"
    old = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _DropTrialTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trial task failed")


@contextlib.contextmanager
def trial_tracebacks_to_files(level: int) -> Iterator[None]:
    """Below DEBUG, Tune's per-trial traceback stays off the terminal; the searcher
    writes it to ``errors/`` and the progress line points there."""
    if level >= DEBUG:
        yield
        return
    log, drop = logging.getLogger(TUNE_ERROR_LOGGER), _DropTrialTracebacks()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def number(value: Any) -> str:
    if value is None:
        return "?"
    value = float(value)
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3g}"


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plural(count: int, noun: str) -> str:
    """``1 candidate``, ``3 candidates``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
