"""The non-space sections of an experiment file: task, training, search.

search_space only validates them (types, known keys, ranges); trainers and
controllers read them. Every field has a tested default, so a minimal file works.

Every numeric field has its range in ``RANGES`` at the end of this file (one row per
field, next to its class's others); each class's ``validate`` calls ``check_ranges``
first. A new numeric field gets a row there; ``tests/test_hardening.py`` fails for a
numeric field without one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError
from .names import FINAL_AVG_ACCURACY, FLOPS, TEST_PREFIX, is_test_metric


@dataclass(frozen=True)
class TaskSettings:
    """``name`` picks a registered task factory; ``options`` are its keyword args,
    validated by the factory (in trainers) with keys reported as ``task.options.X``."""

    name: str = "split_digits"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluatorSettings:
    """What scores a plain decision space: ``name`` picks an evaluator registered in
    ``search_space.evaluators``; ``options`` are its keyword arguments. Empty ``name``:
    none (an architecture space is trained with ``task`` and ``training`` instead)."""

    name: str = ""
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CurriculumSettings:
    """Progressive curriculum inside each experience.

    ``kind``: none (plain shuffling), entropy / loss (difficulty scored by the current
    model, easy first), random (the control: same pacing and promotion, random scores).
    """

    kind: Literal["none", "entropy", "loss", "random"] = "none"
    pacing: Literal["sqrt", "linear", "step"] = "sqrt"
    levels: int = 3
    start_competence: float = 0.25
    threshold: float = 0.9
    patience: int = 2
    max_stage_steps: int = 0          # 0 = no cap beyond the experience budget
    eval_every: int = 25              # steps between promotion checks
    mask_schedule: Literal["none", "fixed_0.15", "fixed_0.40", "0.15->0.50", "0.50->0.15"] = "none"

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)


@dataclass(frozen=True)
class ReplaySettings:
    """Rehearsal across experiences: a fixed-size buffer mixed into every step.

    ``loss``: ``plain`` (ER: one cross-entropy over all classes for the incoming and
    the replayed batch) or ``ace`` (ER-ACE, Caccia et al. 2022: the incoming batch's
    cross-entropy only over the classes present in it, so new classes do not push
    the old ones' logits down; the replayed batch keeps all classes).
    """

    policy: Literal["none", "reservoir", "class_balanced"] = "none"
    budget: int = 200                 # samples kept in total
    weight: Literal["equal", "inverse_t"] = "equal"   # replay loss weight 1 or 1/t
    der_alpha: float = 0.0            # > 0 adds DER++ logit matching on stored logits
    loss: Literal["plain", "ace"] = "plain"

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)


@dataclass(frozen=True)
class LossWeights:
    """Explicit weights of the auxiliary terms (each is also logged on its own)."""

    balance: float = 0.01             # Switch load-balancing loss
    z_loss: float = 0.001             # router z-loss
    bias_update_rate: float = 0.001   # DeepSeek-V3 bias step (balance: bias)
    span: float = 0.0                 # L1 on learned dynamic spans
    router_entropy: float = 0.0       # dynamic router: entropy of p per token (fewer experts)
    router_l1: float = 0.0            # relu router: L1 of its gate scores (fewer experts)
    span_hold: int = 0                # training steps of each experience before ``span`` applies

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)


@dataclass(frozen=True)
class TrainingSettings:
    steps_per_experience: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    eval_batch_size: int = 256
    device: Literal["auto", "cpu", "cuda"] = "auto"
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    joint: bool = False               # upper-bound control: all experiences at once
    log_every: int = 10               # steps between points of the training curves
    dropout: float = 0.0              # on every residual branch (and an MLP's hidden layers)
    # the recipe of each experience's fresh optimiser (trainers.system.configure_optimizers):
    # a linear warm-up over the first ``warmup`` fraction of the experience's steps, then
    # ``lr`` (lr_schedule ``constant``) or a cosine down to ``min_lr`` x lr (``cosine``).
    # grad_clip > 0 clips the global gradient norm to it (0: no clipping).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup: float = 0.0
    min_lr: float = 0.0
    grad_clip: float = 0.0
    # numeric precision of training and evaluation forwards: bf16 = autocast to
    # bfloat16 (weights stay float32); trainers/precision.py
    precision: Literal["fp32", "bf16"] = "fp32"

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)


@dataclass(frozen=True)
class Objective:
    """A value a policy optimises, read from TrialMetrics by name."""

    metric: str
    direction: Literal["max", "min"]

    def validate(self, key: str = "") -> None:
        """A test-split metric is never an objective: selecting on it would make the
        test split a second validation split and its numbers meaningless."""
        if is_test_metric(self.metric):
            raise ConfigError(f"{key}.metric" if key else "metric",
                              f"{self.metric!r} is measured on the held-out test split and cannot be "
                              f"an objective; use {self.metric[len(TEST_PREFIX):]!r} (validation)")


@dataclass(frozen=True)
class Budget:
    """Hard limits checked before training (0 = unlimited)."""

    max_flops: float = 0.0
    max_params: float = 0.0

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)


SEARCH_LOGGERS = ("mlflow",)          # search.loggers: trackers a search can add


@dataclass(frozen=True)
class ConfirmSettings:
    """Seed repeats of the best front candidates once a search ends (``dynas confirm``):
    the ``top`` best get ``seeds`` more trainings with fresh training seeds (0: off)."""

    top: int = 0
    seeds: int = 0

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)
        if (self.top > 0) != (self.seeds > 0):
            raise ConfigError(key, f"give both top and seeds (> 0), or neither; got top={self.top}, "
                                   f"seeds={self.seeds}")

    @property
    def enabled(self) -> bool:
        return self.top > 0 and self.seeds > 0


@dataclass(frozen=True)
class SupernetSettings:
    """The weight-sharing supernet of ``search.evaluation: supernet`` (``trainers.supernet``).

    ``steps_per_experience``: its training steps per experience, one sampled path per
    step (0: ``factor`` times the training section's: the supernet trains many paths
    with one budget, so it gets more steps than one stand-alone trial). ``finetune_steps``: > 0 fine-tunes
    each candidate's inherited weights for that many steps per experience before it is
    scored (0: scored as inherited). ``seed``: of the path sampler and the training.

    ``sampling``: which paths a training step trains (``trainers.supernet.sampling``):
    ``uniform`` (one path, every decision uniform: SPOS), ``fair`` (one path, each
    decision's choices dealt from shuffled rounds, so every choice is trained equally
    often: FairNAS's balance across steps) or ``sandwich`` (the largest and the smallest
    path plus ``sandwich_paths`` uniform ones, their losses summed into one update:
    BigNAS). ``shots``: ``one`` supernet, or few-shot NAS's split into one sub-supernet
    per ``d_model`` or per kind of the first layer's ``attention``
    (``search_space.sharing.split``); each candidate inherits from the one holding it."""

    steps_per_experience: int = 0
    factor: float = 2.0
    finetune_steps: int = 0
    seed: int = 0
    sampling: Literal["uniform", "fair", "sandwich"] = "uniform"
    sandwich_paths: int = 2
    shots: Literal["one", "d_model", "attention"] = "one"

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)

    def steps(self, training_steps: int) -> int:
        return self.steps_per_experience or max(1, round(self.factor * training_steps))


@dataclass(frozen=True)
class FidelitySettings:
    """Budget as a fidelity (``controllers.run.fidelity``): successive halving over
    training budgets. ``rungs`` are multiples of ``training.steps_per_experience``,
    strictly increasing (``[1, 4, 16]``); every rung trains the whole stream, so the
    continual metrics of one rung compare with each other. Rung 0 is the search itself;
    the best ``keep`` fraction of each rung (by validation values) trains again at the
    next rung's budget. Empty: off (every trial at the training section's budget)."""

    rungs: tuple[int, ...] = ()
    keep: float = 0.25

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)
        for i, rung in enumerate(self.rungs):
            problem = RUNG.problem(rung)
            if problem:
                raise ConfigError(f"{key}.rungs[{i}]", problem)
            if i and rung <= self.rungs[i - 1]:
                raise ConfigError(f"{key}.rungs", f"budgets must increase; got {list(self.rungs)}")
        if len(self.rungs) == 1:
            raise ConfigError(f"{key}.rungs", f"one rung is no fidelity; give two or more "
                                              f"(e.g. [1, 4, 16]) or leave it out; got {list(self.rungs)}")

    @property
    def enabled(self) -> bool:
        return len(self.rungs) > 1

    def sizes(self, trials: int) -> list[int]:
        """How many candidates each rung trains: ``trials`` at rung 0, then the best
        ``floor(keep x previous)`` (at least one must reach the top rung)."""
        out = [int(trials)]
        for _ in self.rungs[1:]:
            out.append(int(math.floor(out[-1] * self.keep + 1e-9)))
        return out

    def check_trials(self, trials: int, key: str = "") -> None:
        """Enough trials that the top rung trains at least one candidate."""
        if self.enabled and self.sizes(trials)[-1] < 1:
            need = 1                      # floor(n * keep) >= m  <=>  n >= ceil(m / keep)
            for _ in self.rungs[1:]:
                need = math.ceil(need / self.keep - 1e-9)
            raise ConfigError(f"{key}.rungs", f"{len(self.rungs)} rungs keeping {self.keep:g} each need at "
                                              f"least {need} trials to promote one candidate to the top "
                                              f"rung; search.trials is {trials}")


EVALUATIONS = ("standalone", "supernet")


@dataclass(frozen=True)
class SearchSettings:
    """``strategy`` names a policy registered in ``controllers.policies`` (checked there,
    so a plugin's strategy needs no change here). Any other key whose value is a mapping
    (``search.ppo: {...}``) is a strategy's own settings section, kept raw in
    ``policy_settings`` and parsed and validated by controllers before any trial."""

    OPEN_SECTIONS = "policy_settings"     # schema.from_mapping: where those sections go

    strategy: str = "random"
    trials: int = 12
    concurrent: int = 2
    seed: int = 0
    objectives: tuple[Objective, ...] = (
        Objective(FINAL_AVG_ACCURACY, "max"),
        Objective(FLOPS, "min"),
    )
    scheduler: Literal["fifo", "asha"] = "fifo"
    budget: Budget = field(default_factory=Budget)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 1             # Ray retries of a crashed trial
    storage: str = "runs"             # parent of run directories
    loggers: tuple[str, ...] = ()     # extra trackers besides TensorBoard: mlflow
    # reference models trained beside the search with the same settings, never told
    # to the policy: "mlp:WIDTHxDEPTH" or an arch.json path (relative to the experiment file)
    baselines: tuple[str, ...] = ()
    keep_weights: Literal["front", "all", "none"] = "front"   # trained weights kept per trial
    remeasure: int = 0                # a repeated proposal is retrained up to N times (fresh seeds)
    confirm: ConfirmSettings = field(default_factory=ConfirmSettings)
    # how a candidate is scored: trained from scratch, or with weights inherited from one
    # supernet trained once (its settings: ``supernet``); see trainers.supernet
    evaluation: Literal["standalone", "supernet"] = "standalone"
    supernet: SupernetSettings = field(default_factory=SupernetSettings)
    # budget as a fidelity: rungs of successive halving (controllers.run.fidelity)
    fidelity: FidelitySettings = field(default_factory=FidelitySettings)
    policy_settings: dict = field(default_factory=dict)   # strategy name -> its section

    def validate(self, key: str = "") -> None:
        check_ranges(self, key)
        if not self.strategy:
            raise ConfigError(f"{key}.strategy", "must name a strategy")
        if not self.objectives:
            raise ConfigError(f"{key}.objectives", "need at least one objective")
        seen: dict[str, int] = {}
        for i, objective in enumerate(self.objectives):
            objective.validate(f"{key}.objectives[{i}]")
            if objective.metric in seen:
                raise ConfigError(f"{key}.objectives[{i}].metric", f"{objective.metric!r} is already "
                                  f"objective {seen[objective.metric]}; each metric once")
            seen[objective.metric] = i
        self.supernet.validate(f"{key}.supernet")
        self.fidelity.check_trials(self.trials, f"{key}.fidelity")
        for i, name in enumerate(self.loggers):
            if name not in SEARCH_LOGGERS:
                raise ConfigError(f"{key}.loggers[{i}]", f"{name!r} is not one of {', '.join(SEARCH_LOGGERS)} "
                                  "(TensorBoard curves are always written)")


# --- ranges -------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (strict at an end marked ``low_open`` / ``high_open``); None: no bound.
    Upper bounds are far beyond any sane run: they catch typos (1e12) before anything
    is allocated, not experiments."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    note: str = ""
    high_open: bool = False

    def problem(self, value: float) -> str | None:
        if value != value:                      # NaN passes every comparison: refuse it
            return f"must be a number, got {value}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {_num(self.low)}{self.note}, got {value}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {_num(self.high)}{self.note}, got {value}"
        return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


SEED = Range(0, 2**32 - 1)          # what numpy and torch accept as a seed
COUNT = Range(1, 10**7)
INF = float("inf")
RANGES: dict[type, dict[str, Range]] = {
    CurriculumSettings: {
        "levels": Range(1, 1000), "start_competence": Range(0, 1, low_open=True),
        "threshold": Range(0, 1), "patience": Range(1, 10**6), "max_stage_steps": Range(0, 10**7),
        "eval_every": COUNT},
    ReplaySettings: {"budget": Range(0, 10**7), "der_alpha": Range(0, 1000)},
    LossWeights: {"balance": Range(0, 1000), "z_loss": Range(0, 1000),
                  "bias_update_rate": Range(0, 1), "span": Range(0, 1000), "router_entropy": Range(0, 1000),
                  "router_l1": Range(0, 1000), "span_hold": Range(0, 10**7)},
    TrainingSettings: {
        "steps_per_experience": COUNT, "batch_size": Range(1, 2**20), "lr": Range(0, 100, low_open=True),
        "weight_decay": Range(0, 100), "seed": SEED, "eval_batch_size": Range(1, 2**20),
        "log_every": COUNT, "dropout": Range(0, 1, high_open=True),
        "warmup": Range(0, 1, high_open=True, note=" (a fraction of each experience's steps)"),
        "min_lr": Range(0, 1, note=" (a fraction of lr)"), "grad_clip": Range(0, 1e6, note=" (0 = no clipping)")},
    Budget: {"max_flops": Range(0, INF, note=" (0 = unlimited)"),
             "max_params": Range(0, INF, note=" (0 = unlimited)")},
    SearchSettings: {
        "trials": Range(1, 10**6), "concurrent": Range(1, 4096), "seed": SEED,
        "cpus_per_trial": Range(0, 4096, low_open=True), "gpus_per_trial": Range(0, 1024),
        "max_failures": Range(0, 1000), "remeasure": Range(0, 1000, note=" (0 = reuse the first measurement)")},
    SupernetSettings: {"steps_per_experience": Range(0, 10**7, note=" (0 = factor x training's)"),
                       "factor": Range(0, 1000, low_open=True), "finetune_steps": Range(0, 10**7),
                       "seed": SEED, "sandwich_paths": Range(0, 64, note=" (random paths per sandwich step)")},
    ConfirmSettings: {"top": Range(0, 10**4, note=" (0 = no confirmation)"),
                      "seeds": Range(0, 1000, note=" (0 = no confirmation)")},
    FidelitySettings: {"keep": Range(0, 1, low_open=True, high_open=True,
                                     note=" (the fraction of a rung promoted to the next)")},
}
RUNG = Range(1, 10**4, note=" (a multiple of training.steps_per_experience)")


def check_ranges(obj: Any, key: str = "", ranges: dict[str, Range] | None = None) -> None:
    """The first field of ``obj`` outside its row of ``ranges`` (default: its ``RANGES``
    entry; a strategy's settings bring their own table), as a ConfigError."""
    for name, allowed in (RANGES.get(type(obj), {}) if ranges is None else ranges).items():
        problem = allowed.problem(getattr(obj, name))
        if problem:
            raise ConfigError(f"{key}.{name}" if key else name, problem)


def settings_dict(obj: Any) -> dict:
    from .schema import to_mapping

    return to_mapping(obj)
