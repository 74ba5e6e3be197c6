"""The architecture a search produces: a tree of frozen configs, saved as JSON.

An ``ArchConfig`` is all that is needed to rebuild a model (with the task's shape);
it carries no weights and loading it never executes code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .schema import from_mapping, to_mapping

SCHEMA_VERSION = 1
MAX_LAYERS = 1024  # a typo like 10000 would otherwise hang describe, sampling and training
# A field added after version 1 carries this metadata: its default is left out of the
# JSON, so every architecture saved before it keeps its arch_id.
OMIT_DEFAULT = {"omit_default": True}


def _check_extra(cfg: Any, family: str, key: str) -> None:
    """A plugin kind's own fields (``KindSpec.fields`` the config class lacks) live in
    the config's ``extra`` mapping: every declared one present and within its range,
    nothing undeclared. Built-in kinds have none, so their JSON (and arch_id) is as before."""
    declared = dict(_spec(family, cfg.kind, key).extra_fields)
    extra = cfg.extra or {}
    for name in extra:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise ConfigError(f"{key}.extra.{name}" if key else f"extra.{name}",
                              f"kind {cfg.kind} has no such field; its own fields: {known}")
    for name, fld in declared.items():
        sub = f"{key}.{name}" if key else name
        if name not in extra:
            raise ConfigError(sub, f"missing field of kind {cfg.kind}")
        problem = fld.check(fld.coerce(extra[name], sub))
        if problem:
            raise ConfigError(sub, problem)


def _spec(family: str, kind: str, key: str):
    """The kind's spec (``search_space.kinds``). The registries module alone is imported,
    lazily: the specs build these configs, and the built-in ones are registered when the
    ``search_space`` package loads (its ``__init__`` imports ``kinds``)."""
    from .kinds.registries import REGISTRIES
    if family in MODEL_KINDS:
        return REGISTRIES[family].get(kind, key or family)
    return REGISTRIES[family].get(kind, f"{key}.kind" if key else "kind")


@dataclass(frozen=True)
class AttentionConfig:
    """One layer's token mixer; ``kind`` names a spec in ``search_space.kinds``.

    ``heads``: 1 for a kind without heads (``identity``, a plugin kind that declares
    no ``heads`` field). ``window``: tokens per segment for ``sliding_window`` (each
    query sees its own and the previous segment). ``max_span``: the largest span
    ``dynamic_span`` can learn. ``extra``: a plugin kind's own fields by name (None for
    every built-in kind: left out of the JSON, so their arch_ids are unchanged).
    """

    kind: str
    heads: int = 1
    window: int = 0
    max_span: int = 0
    extra: dict[str, Any] | None = field(default=None, metadata=OMIT_DEFAULT, hash=False)

    def validate(self, key: str = "") -> None:
        spec = _spec("attention", self.kind, key)
        if self.heads < 1:
            raise ConfigError(f"{key}.heads", f"must be >= 1, got {self.heads}")
        _check_extra(self, "attention", key)
        spec.validate(self, key)


@dataclass(frozen=True)
class RouterConfig:
    """How tokens pick experts.

    ``topk``: softmax over a linear gate with a learnable temperature, the k best.
    ``dynamic``: input-dependent k: the fewest experts whose probability mass reaches
    ``top_p``, at most ``top_k`` (the cap).
    ``relu``: input-dependent k (ReMoE): the experts whose ReLU gate score is positive,
    at most ``top_k``; ``loss_weights.router_l1`` prunes them.
    """

    kind: str = "topk"
    top_k: int = 2
    top_p: float = 0.5

    def validate(self, key: str = "") -> None:
        _spec("router", self.kind, key).validate(self, key)
        if self.top_k < 1:
            raise ConfigError(f"{key}.top_k", f"must be >= 1, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"{key}.top_p", f"must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class FFNConfig:
    """One layer's channel mixer (a dense MLP, a gated one, a mixture of experts);
    ``kind`` names a spec in ``search_space.kinds``.

    Hidden width is ``expansion * d_model`` (per expert for MoE).
    ``capacity_factor`` 0 means dropless; otherwise each expert takes at most
    ``ceil(capacity_factor * tokens * k / experts)`` tokens and drops the rest.
    ``expert``: the FFN kind of a MoE's routed and shared experts (``dense``, ``glu``).
    ``extra``: a plugin kind's own fields by name (None for the built-in kinds).
    """

    kind: str
    expansion: int = 4
    experts: int = 0
    router: RouterConfig | None = None
    shared_experts: int = 0
    capacity_factor: float = 0.0
    balance: str = "aux_loss"
    expert: str = field(default="dense", metadata=OMIT_DEFAULT)
    extra: dict[str, Any] | None = field(default=None, metadata=OMIT_DEFAULT, hash=False)

    def validate(self, key: str = "") -> None:
        spec = _spec("ffn", self.kind, key)
        if self.expansion < 1:
            raise ConfigError(f"{key}.expansion", f"must be >= 1, got {self.expansion}")
        _check_extra(self, "ffn", key)
        spec.validate(self, key)


@dataclass(frozen=True)
class LayerConfig:
    attention: AttentionConfig
    ffn: FFNConfig


MODEL_KINDS = ("tokens", "stem", "norm", "head", "positions")   # whole-model kinds, in sampling order


@dataclass(frozen=True)
class TrainingChoices:
    """Training settings sampled with the architecture, from a list in the experiment's
    ``training:`` (``lr: [0.001, 0.003]``); None keeps the experiment's value. They are
    part of the candidate (and its arch_id: the same model at another learning rate is
    another trial), and ``trainers.fit`` applies them over its training settings."""

    lr: float | None = field(default=None, metadata=OMIT_DEFAULT)
    weight_decay: float | None = field(default=None, metadata=OMIT_DEFAULT)
    dropout: float | None = field(default=None, metadata=OMIT_DEFAULT)
    batch_size: int | None = field(default=None, metadata=OMIT_DEFAULT)

    def overrides(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


TUNABLE_TRAINING = tuple(f.name for f in dataclasses.fields(TrainingChoices))


@dataclass(frozen=True)
class ArchConfig:
    """A heterogeneous transformer: one shared width, a config per layer.

    ``tokens``, ``stem``, ``norm``, ``head``, ``positions``: whole-model kinds (see
    ``search_space.kinds.model``); their defaults are the model dynas always built.
    ``training``: training settings sampled with it (``TrainingChoices``), or None.
    """

    d_model: int
    layers: tuple[LayerConfig, ...]
    schema_version: int = SCHEMA_VERSION
    tokens: str = field(default="task", metadata=OMIT_DEFAULT)
    stem: str = field(default="linear", metadata=OMIT_DEFAULT)
    norm: str = field(default="pre", metadata=OMIT_DEFAULT)
    head: str = field(default="mean", metadata=OMIT_DEFAULT)
    positions: str = field(default="learned", metadata=OMIT_DEFAULT)
    training: TrainingChoices | None = field(default=None, metadata=OMIT_DEFAULT)

    def validate(self, key: str = "") -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ConfigError(
                f"{key}.schema_version" if key else "schema_version",
                f"unsupported version {self.schema_version} (this dynas reads {SCHEMA_VERSION})",
            )
        if self.d_model < 1:
            raise ConfigError("d_model", f"must be >= 1, got {self.d_model}")
        if not self.layers:
            raise ConfigError("layers", "an architecture needs at least one layer")
        if len(self.layers) > MAX_LAYERS:
            raise ConfigError("layers", f"{len(self.layers)} layers; at most {MAX_LAYERS}")
        for family in MODEL_KINDS:
            _spec(family, getattr(self, family), family)
        if self.head == "cls" and all(l.attention.kind == "identity" for l in self.layers):
            raise ConfigError("head", "cls reads a token that only attention mixes with the input; "
                              "every layer here is identity")
        for i, layer in enumerate(self.layers):
            heads = layer.attention.heads
            if self.d_model % heads:
                raise ConfigError(
                    f"layers[{i}].attention.heads",
                    f"{heads} does not divide d_model={self.d_model}",
                )

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return to_mapping(self)

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> "ArchConfig":
        try:
            layers = data.get("layers") if isinstance(data, dict) else None
            if isinstance(layers, list) and len(layers) > MAX_LAYERS:   # before parsing them all
                raise ConfigError("layers", f"{len(layers)} layers; at most {MAX_LAYERS}")
            return from_mapping(cls, data)
        except ConfigError as err:
            raise err.with_source(source) if source else err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def arch_id(self) -> str:
        """Stable content hash: equal architectures share an id across runs."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves half a file; a
        failed write (a full disk) removes its temporary file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ArchConfig":
        """Read an arch JSON file (plain, or an export with an ``arch`` entry)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError("", "no such architecture file", str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError("", f"cannot read ({err.strerror or type(err).__name__})", str(path)) from None
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit int
            raise ConfigError("", f"not valid JSON ({err})", str(path)) from None
        except RecursionError:
            raise ConfigError("", "not valid JSON (nested too deeply)", str(path)) from None
        if isinstance(data, dict) and "arch" in data and "layers" not in data:
            data = data["arch"]
        return cls.from_dict(data, source=str(path))

    # --- summaries -----------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def model_kinds(self) -> dict[str, str]:
        """The whole-model kinds that differ from their defaults (what summaries show)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {f: getattr(self, f) for f in MODEL_KINDS if getattr(self, f) != defaults[f]}

    def describe(self) -> str:
        """One line per layer, for logs and reports (the kinds' spec labels)."""
        extra = "".join(f" {k}={v}" for k, v in self.model_kinds().items())
        if self.training is not None:
            extra += "".join(f" {k}={v:g}" for k, v in self.training.overrides().items())
        rows = [f"d_model={self.d_model} layers={self.num_layers}{extra}"]
        for i, layer in enumerate(self.layers):
            a, f = layer.attention, layer.ffn
            attn = _spec("attention", a.kind, "").label(a)
            rows.append(f"  [{i}] {attn} + {_spec('ffn', f.kind, '').label(f)}")
        return "\n".join(rows)

    def summary(self) -> str:
        """One line: ``d64 | full+dense x2, sw16+moe8k2`` (the kinds' short labels)."""
        parts = [_spec("attention", layer.attention.kind, "").short(layer.attention) + "+"
                 + _spec("ffn", layer.ffn.kind, "").short(layer.ffn) for layer in self.layers]
        kinds = [_spec(f, v, "").short(v) for f, v in self.model_kinds().items()]
        if self.training is not None:
            kinds += [f"{k}={v:g}" for k, v in self.training.overrides().items()]
        return f"d{self.d_model} | " + "".join(k + " " for k in kinds) + ", ".join(parts)


@dataclass(frozen=True)
class TaskShape:
    """What a task feeds a model; enough for the cost model, no data needed.

    Exactly one of ``input_dim`` (continuous tokens, e.g. image patches, embedded by
    a linear layer) and ``vocab_size`` (discrete tokens, embedded by a table) is > 0.
    ``per_token``: a label per position (sequence tasks) instead of one per sample.
    ``image_side``: > 0 when the tokens are the square patches, row-major, of a square
    image of that side (image tasks): the model can then re-cut them (``tokens``).
    """

    seq_len: int
    num_classes: int
    input_dim: int = 0
    vocab_size: int = 0
    per_token: bool = False
    causal: bool = False
    image_side: int = 0

    def __post_init__(self) -> None:
        if (self.input_dim > 0) == (self.vocab_size > 0):
            raise ValueError("TaskShape needs exactly one of input_dim and vocab_size")


def replace_layer(arch: ArchConfig, index: int, **changes: Any) -> ArchConfig:
    """A copy of ``arch`` with one layer's fields changed (for tests and ablations)."""
    layers = list(arch.layers)
    layers[index] = dataclasses.replace(layers[index], **changes)
    return dataclasses.replace(arch, layers=tuple(layers))
