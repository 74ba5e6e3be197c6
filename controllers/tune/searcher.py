"""The one Ray-aware search class: Tune's ``Searcher`` events as ``SearchDriver`` calls.

Like Ray's own ``OptunaSearch`` around an Optuna study, this class only translates;
the lifecycle (de-dup, feasibility, outcome, tell, record, policy state) is the
driver's (``controllers.driver``); the executor around it is ``controllers.tune.executor``. Who calls what (on the driver, in Tune's loop):

- ``suggest(trial_id)`` -> ``driver.ask()``; the trial's config is
  ``{"proposal_id", "arch", "params", "arch_id", "train_seed", "promoted"}``
  (``train_seed``: a seed repeat's training seed, else None; ``promoted``: a rung's
  retraining at a larger budget, ``controllers.run.fidelity``). ``None`` (wait) while only
  duplicates of running trials come, ``FINISHED`` once the driver is finished.
- ``on_trial_complete(trial_id, result, error)`` -> ``driver.tell(proposal, result)``
  with the executor's verdict: ``complete`` when every experience was trained,
  ``pruned`` when a scheduler stopped it earlier (``experiences_done <
  num_experiences``), ``failed`` on an error. Errors carry no message in this hook, so
  ``TrialErrors`` (a Tune callback Tune calls right after it) hands the reason over
  (``controllers.outcomes.failure_reason`` of the worker's exception) and the
  traceback, kept in ``RUN_DIR/errors/`` (``controllers.tracking``); the tell waits.
- ``save``/``restore`` -> ``driver.state_dict()``/``load_state_dict`` as JSON.

Concurrency is Ray's ``ConcurrencyLimiter`` around this class; the driver's ``budget``
is the number of new architectures started before ``FINISHED``. Trainables report with
``controllers.results.tune_result``.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from ray import cloudpickle
from ray.tune import Callback
from ray.train.constants import CHECKPOINT_DIR_NAME   # Tune adds it to a result that carried a checkpoint
from ray.tune.search import Searcher

from .. import outcomes
from ..driver import SearchDriver
from ..policy import Proposal
from ..records import write_json_atomic
from ..tracking import write_traceback
from ..results import DONE_KEY, RESULT_KEY, TOTAL_KEY, parse_result, trial_result, tune_result

log = logging.getLogger(__name__)

__all__ = ["PolicySearcher", "StopOnSignal", "TrialErrors", "error_reason", "parse_result", "tune_result"]


class PolicySearcher(Searcher):
    """A ``SearchDriver`` behind Tune's ``Searcher`` API; see the module docstring."""

    def __init__(self, driver: SearchDriver, *, metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.driver = driver
        self._live: dict[str, Proposal] = {}      # trial_id -> proposal training
        self._last: dict[str, dict] = {}          # trial_id -> last reported result
        self._errored: dict[str, Proposal] = {}   # errored, waiting for TrialErrors' reason
        self.trial_storage: Path | None = None    # the Tune run's folder in the driver's storage

    # --- Tune's Searcher API -------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        self.flush_errors()
        proposal = self.driver.ask()
        if proposal is None:
            return Searcher.FINISHED if self.driver.finished else None
        self._live[trial_id] = proposal
        return {"proposal_id": proposal.id, "arch": proposal.arch.to_dict(),
                "params": dict(proposal.params), "arch_id": proposal.arch.arch_id,
                "train_seed": proposal.seed, "promoted": proposal.id in self.driver.promotions}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last[trial_id] = result

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        proposal = self._live.pop(trial_id, None)
        if proposal is None:
            return
        if error:
            self._errored[trial_id] = proposal     # reason arrives via TrialErrors
            return
        result = result if result and RESULT_KEY in result else self._last.get(trial_id)
        self._last.pop(trial_id, None)
        if not result:                             # removed before it ever ran
            self.driver.abandon(proposal)
            return
        blob = parse_result(result)
        done, total = blob.get(DONE_KEY, 0), blob.get(TOTAL_KEY, 0)
        verdict = ("pruned", outcomes.scheduler_stop(done, total)) if done < total else ("complete", None)
        told = trial_result(blob, *verdict, trial_id=trial_id)
        told.weights = self._weights_dir(trial_id, result)
        self.driver.tell(proposal, told)

    def _weights_dir(self, trial_id: str, result: dict) -> str:
        """The persisted folder of the trial's last checkpoint (its trained model), if any:
        Tune names it in the result (``checkpoint_dir_name``) under the trial's folder."""
        name = result.get(CHECKPOINT_DIR_NAME)
        if not name or self.trial_storage is None:
            return ""
        folder = self.trial_storage / trial_dirname(trial_id) / name
        return str(folder) if folder.is_dir() else ""

    def record_error(self, trial_id: str, reason: str, traceback: str = "", fault: str | None = None) -> None:
        """``TrialErrors`` hands over why an errored trial failed (and how); a fault of
        the machine (``outcomes.infrastructure_fault``) is not recorded but stops the search."""
        proposal = self._errored.pop(trial_id, None)
        if proposal is None:
            return
        blob = parse_result(self._last.pop(trial_id, None))
        if fault:              # not the trial's: nothing of it is written (the disk may be full)
            self.driver.fail_infrastructure(proposal, fault)
            return
        if traceback:
            write_traceback(self.driver.run_dir, proposal.id, traceback)
        self.driver.tell(proposal, trial_result(blob, "failed", reason, trial_id))

    def flush_errors(self) -> None:
        """Errored trials whose reason never came (should not happen) fail without one."""
        for trial_id in list(self._errored):
            self.record_error(trial_id, "trial errored (no error message reached the driver)")

    def save(self, checkpoint_path: str) -> None:
        """JSON, not pickle: the driver's state (the policy's state_dict and counters)."""
        write_json_atomic(checkpoint_path, self.driver.state_dict())

    def restore(self, checkpoint_path: str) -> None:
        self.driver.load_state_dict(json.loads(Path(checkpoint_path).read_text()))

    def __getstate__(self) -> dict:
        # Tune pickles its config (tuner.pkl). The policy's state lives in
        # policy_state.json instead; a searcher unpickled from there is a shell.
        state = self.__dict__.copy()
        for key in ("driver", "_live", "_last", "_errored", "trial_storage"):
            state[key] = None
        return state


def trial_dirname(trial_id: str) -> str:
    """A trial's folder under the Tune run's storage (Tune's ``trial_dirname_creator``)."""
    return f"trial_{trial_id}"


class TrialErrors(Callback):
    """Passes an errored trial's exception text to the searcher (Tune calls this right
    after ``Searcher.on_trial_complete(error=True)``, which carries no message)."""

    def __init__(self, searcher: PolicySearcher):
        self.searcher = searcher

    def on_trial_error(self, iteration: int, trials: Sequence, trial: Any, **info: Any) -> None:
        exc, text = trial_error(trial)
        self.searcher.record_error(trial.trial_id, _one_line(text), error_text(trial),
                                   outcomes.infrastructure_fault(exc, text))


def error_text(trial: Any) -> str:
    """The worker's full traceback as Tune wrote it (empty when there is none)."""
    with contextlib.suppress(Exception):
        return Path(trial.error_file).read_text(encoding="utf-8", errors="replace")
    return ""


class StopOnSignal(Callback):
    """Ends Tune's loop at its next step once a signal came (``controllers.interrupt``):
    ``Interrupted`` raised here makes Tune stop every running trial on its way out."""

    def __init__(self, stop: Any):
        self.stop = stop

    def on_step_begin(self, iteration: int, trials: Sequence, **info: Any) -> None:
        if self.stop is not None:
            self.stop.check()

    def __getstate__(self) -> dict:
        # Tune pickles its config (tuner.pkl); the request (signal handlers, the driver's
        # hooks) belongs to this process only, so a pickled copy is a shell.
        return {"stop": None}


def trial_error(trial: Any) -> tuple[BaseException | None, str]:
    """The trial's last exception (when its pickle reached the driver) and its text in
    ``controllers.outcomes``' wording."""
    # Tune has just written both files next to the driver (trial.local_path); the
    # storage copies that get_error() reads appear only after the next sync.
    exc, text = None, "trial errored"
    with contextlib.suppress(Exception):
        with open(trial.pickled_error_file, "rb") as fh:
            exc = cloudpickle.load(fh)
    if exc is not None:
        exc = getattr(exc, "cause", None) or exc
        text = outcomes.failure_reason(exc)
    else:
        with contextlib.suppress(Exception):
            lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
            text = lines[-1] if lines else text
    return exc, text


def error_reason(trial: Any, limit: int = 500) -> str:
    """The trial's last error in ``controllers.outcomes``' wording, one line."""
    return _one_line(trial_error(trial)[1], limit)


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
