"""Synthetic sequence tasks with a difficulty knob, as task-incremental streams.

Each task is a stream of ``n_experiences`` *variants* (``scenario="task_il"``): the
sequence tasks give every experience its own block of symbol tokens, so a later
experience needs new embeddings and new answers, and forgetting is measurable; modular
arithmetic gives every experience its own operation. Inside an experience, samples come
in ``levels`` difficulty levels (an equal share each, shuffled); ``Experience.levels``
holds the level of each train sample for the curriculum. The ``min_*``/``max_*``
options are the difficulty knob: level l interpolates linearly from min to max.

Inputs are discrete tokens (T,) long, token 0 is padding. Labels are per token, (T,)
long, -100 everywhere except the answer positions, where the label is the answer's
token id (so ``num_classes == vocab_size``). Answers always come after the evidence
they depend on, so a causal model can solve them too (option ``causal`` only sets the
task shape's flag). Samples are i.i.d. draws from a seeded ``torch.Generator``: when
the instance space is small (modular arithmetic with few terms) splits share
instances, and test accuracy measures fitting rather than generalisation.
Shape legend: N samples, T tokens, P pairs, K copied tokens, M terms.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError

from .base import Experience, Task, register_task
from .images import OPTION, check_int
from .preprocessing import Tokens

IGNORE = -100
PAD = 0
SPLITS = ("train", "val", "test")
Generate = Callable[[int, int, int, torch.Generator], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class StreamOptions:
    """Options every synthetic task has: levels per experience and split sizes
    (samples per experience)."""

    levels: int = 3
    n_train: int = 2000
    n_val: int = 200
    n_test: int = 500
    causal: bool = False

    def validate(self) -> None:
        check_int("levels", self.levels, 1)
        for name in ("n_train", "n_val", "n_test"):
            check_int(name, getattr(self, name), 1)
        if not isinstance(self.causal, bool):
            raise ConfigError(f"{OPTION}.causal", f"must be true or false, got {self.causal!r}")

    def knob(self, low_name: str, high_name: str) -> list[int]:
        """Difficulty value of each level: ints from min to max, linearly, all distinct."""
        low, high = check_int(low_name, getattr(self, low_name), 1), check_int(high_name, getattr(self, high_name), 1)
        if low > high:
            raise ConfigError(f"{OPTION}.{low_name}", f"{low} exceeds {high_name}={high}")
        if self.levels > high - low + 1:
            raise ConfigError(f"{OPTION}.levels", f"{self.levels} levels need {high_name} - {low_name} >= {self.levels - 1}")
        if self.levels == 1:
            return [high]
        return [math.floor(low + (high - low) * lv / (self.levels - 1) + 0.5) for lv in range(self.levels)]

    def token_shape(self, seq_len: int, vocab_size: int) -> TaskShape:
        return TaskShape(seq_len=seq_len, num_classes=vocab_size, vocab_size=vocab_size,
                         per_token=True, causal=self.causal)


def random_distinct(n: int, k: int, m: int, generator: torch.Generator) -> Tensor:
    """(n, k) long: per row, k distinct values drawn uniformly from [0, m)."""
    return torch.rand(n, m, generator=generator).argsort(dim=1)[:, :k]


def build_stream(name: str, seed: int, opts: StreamOptions, shape: TaskShape, n_experiences: int,
                 generate: Generate, classes: Callable[[int], tuple[int, ...]]) -> Task:
    """Assemble the stream: ``generate(experience, level, n, generator)`` makes n rows
    (x (n, T), y (n, T)) of one level; each (experience, split) has its own generator."""
    experiences, salt = [], zlib.crc32(name.encode())   # decorrelate tasks sharing a seed
    for e in range(n_experiences):
        data, train_levels = {}, None
        for s, (split, n) in enumerate(zip(SPLITS, (opts.n_train, opts.n_val, opts.n_test))):
            generator = torch.Generator().manual_seed((seed * 1_000_003 + salt + e * 101 + s) % 2**63)
            levels = (torch.arange(n) % opts.levels)[torch.randperm(n, generator=generator)]   # (N,)
            x = torch.full((n, shape.seq_len), PAD, dtype=torch.long)                          # (N, T)
            y = torch.full((n, shape.seq_len), IGNORE, dtype=torch.long)                       # (N, T)
            for level in range(opts.levels):
                rows = torch.nonzero(levels == level).flatten()
                if len(rows):
                    x[rows], y[rows] = generate(e, level, len(rows), generator)
            data[split] = TensorDataset(x, y)
            if split == "train":
                train_levels = levels
        experiences.append(Experience(index=e, classes=classes(e), levels=train_levels,
                                      raw_test=data["test"].tensors[0], **data))
    return Task(name, shape, experiences, scenario="task_il",
                preprocessing=Tokens(vocab_size=shape.vocab_size, seq_len=shape.seq_len))


# --- multi-query associative recall -------------------------------------------------
@dataclass(frozen=True)
class AssocRecallOptions(StreamOptions):
    """``n_experiences`` variants; ``symbols`` keys and as many values per experience;
    level l has pairs interpolated from ``min_pairs`` to ``max_pairs``; each sample
    asks ``min(queries, pairs)`` distinct keys. ``seq_len`` (0 = as short as the
    pairs allow) pads every sample to that length with the queries at its end, so the
    distance from evidence to question grows with it (long-context recall)."""

    n_experiences: int = 3
    min_pairs: int = 2
    max_pairs: int = 8
    queries: int = 4
    symbols: int = 16
    seq_len: int = 0

    def shape(self) -> TaskShape:
        self.validate()
        check_int("n_experiences", self.n_experiences, 1)
        check_int("queries", self.queries, 1)
        self.knob("min_pairs", "max_pairs")
        check_int("symbols", self.symbols, self.max_pairs)
        natural = 2 * self.max_pairs + self.queries
        if self.seq_len:
            check_int("seq_len", self.seq_len, natural)
        return self.token_shape(self.seq_len or natural, 1 + 2 * self.symbols * self.n_experiences)


@register_task("assoc_recall", shape=lambda **o: AssocRecallOptions(**o).shape(), options=AssocRecallOptions,
               description="multi-query associative recall; difficulty = number of pairs")
def assoc_recall(seed: int = 0, **options) -> Task:
    """Multi-query associative recall (Zoology's MQAR, Arora et al. 2023).

    ``k1 v1 k2 v2 ... kP vP q1 ... qQ PAD...``: keys are distinct within a sample,
    values are random; each query repeats one of the keys and its label is that key's
    value. Experience e uses keys ``1 + 2Se + [0, S)`` and values ``1 + 2Se + S + [0, S)``.
    """
    opts = AssocRecallOptions(**options)
    shape, pairs_at = opts.shape(), opts.knob("min_pairs", "max_pairs")
    s = opts.symbols

    def generate(e: int, level: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        p = pairs_at[level]
        q = min(opts.queries, p)
        keys = random_distinct(n, p, s, g) + 1 + 2 * s * e                  # (N, P)
        values = torch.randint(0, s, (n, p), generator=g) + 1 + 2 * s * e + s
        asked = random_distinct(n, q, p, g)                                  # (N, Q) pair indices
        x = torch.full((n, shape.seq_len), PAD, dtype=torch.long)
        y = torch.full_like(x, IGNORE)
        x[:, 0:2 * p:2], x[:, 1:2 * p:2] = keys, values
        start = shape.seq_len - q if opts.seq_len else 2 * p
        x[:, start:start + q] = keys.gather(1, asked)
        y[:, start:start + q] = values.gather(1, asked)
        return x, y

    def classes(e: int) -> tuple[int, ...]:
        return tuple(range(1 + 2 * s * e + s, 1 + 2 * s * (e + 1)))

    return build_stream("assoc_recall", seed, opts, shape, opts.n_experiences, generate, classes)


# --- selective copy -----------------------------------------------------------------
NOISE, COPY_SEP, COPY_BLANK, COPY_DATA = 1, 2, 3, 4


@dataclass(frozen=True)
class SelectiveCopyOptions(StreamOptions):
    """``length``: the noisy region; level l copies tokens interpolated from
    ``min_tokens`` to ``max_tokens``; ``symbols`` data tokens per experience."""

    n_experiences: int = 3
    min_tokens: int = 2
    max_tokens: int = 8
    length: int = 24
    symbols: int = 8

    def shape(self) -> TaskShape:
        self.validate()
        check_int("n_experiences", self.n_experiences, 1)
        self.knob("min_tokens", "max_tokens")
        check_int("length", self.length, self.max_tokens)
        check_int("symbols", self.symbols, 1)
        return self.token_shape(self.length + 1 + self.max_tokens, COPY_DATA + self.symbols * self.n_experiences)


@register_task("selective_copy", shape=lambda **o: SelectiveCopyOptions(**o).shape(), options=SelectiveCopyOptions,
               description="selective copying; difficulty = number of tokens to copy")
def selective_copy(seed: int = 0, **options) -> Task:
    """Selective copying (Gu & Dao 2023, Mamba): content-aware, not positional.

    ``[length tokens: K data tokens at random positions, NOISE elsewhere] SEP BLANK*K
    PAD...``: the label of the i-th BLANK is the i-th data token in input order.
    Tokens: 1 noise, 2 separator, 3 blank; experience e's data are ``4 + Se + [0, S)``.
    """
    opts = SelectiveCopyOptions(**options)
    shape, count_at, s, length = opts.shape(), opts.knob("min_tokens", "max_tokens"), opts.symbols, opts.length

    def generate(e: int, level: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        k = count_at[level]
        where = random_distinct(n, k, length, g).sort(dim=1).values         # (N, K) ascending
        tokens = torch.randint(0, s, (n, k), generator=g) + COPY_DATA + s * e
        x = torch.full((n, shape.seq_len), PAD, dtype=torch.long)
        y = torch.full_like(x, IGNORE)
        x[:, :length] = NOISE
        x[:, :length] = x[:, :length].scatter(1, where, tokens)
        x[:, length] = COPY_SEP
        x[:, length + 1:length + 1 + k] = COPY_BLANK
        y[:, length + 1:length + 1 + k] = tokens
        return x, y

    def classes(e: int) -> tuple[int, ...]:
        return tuple(range(COPY_DATA + s * e, COPY_DATA + s * (e + 1)))

    return build_stream("selective_copy", seed, opts, shape, opts.n_experiences, generate, classes)


# --- sorting ------------------------------------------------------------------------
SORT_SEP, SORT_BLANK, SORT_DATA = 1, 2, 3


@dataclass(frozen=True)
class SortingOptions(StreamOptions):
    """Level l sorts sequences of length interpolated from ``min_len`` to ``max_len``
    over ``symbols`` tokens per experience (repeats allowed)."""

    n_experiences: int = 3
    min_len: int = 2
    max_len: int = 8
    symbols: int = 16

    def shape(self) -> TaskShape:
        self.validate()
        check_int("n_experiences", self.n_experiences, 1)
        self.knob("min_len", "max_len")
        check_int("symbols", self.symbols, 1)
        return self.token_shape(2 * self.max_len + 1, SORT_DATA + self.symbols * self.n_experiences)


@register_task("sorting", shape=lambda **o: SortingOptions(**o).shape(), options=SortingOptions,
               description="sort a token sequence; difficulty = sequence length")
def sorting(seed: int = 0, **options) -> Task:
    """Sorting: ``a1 ... am SEP BLANK*m PAD...``; the labels of the blanks are the
    input tokens in ascending token-id order. Tokens: 1 separator, 2 blank;
    experience e's symbols are ``3 + Se + [0, S)``.
    """
    opts = SortingOptions(**options)
    shape, len_at, s = opts.shape(), opts.knob("min_len", "max_len"), opts.symbols

    def generate(e: int, level: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        m = len_at[level]
        tokens = torch.randint(0, s, (n, m), generator=g) + SORT_DATA + s * e   # (N, M)
        x = torch.full((n, shape.seq_len), PAD, dtype=torch.long)
        y = torch.full_like(x, IGNORE)
        x[:, :m], x[:, m] = tokens, SORT_SEP
        x[:, m + 1:2 * m + 1] = SORT_BLANK
        y[:, m + 1:2 * m + 1] = tokens.sort(dim=1).values
        return x, y

    def classes(e: int) -> tuple[int, ...]:
        return tuple(range(SORT_DATA + s * e, SORT_DATA + s * (e + 1)))

    return build_stream("sorting", seed, opts, shape, opts.n_experiences, generate, classes)


# --- modular arithmetic -------------------------------------------------------------
EQUALS, NUMBERS = 1, 5
OPS: dict[str, tuple[int, Callable[[Tensor, Tensor], Tensor]]] = {   # name -> (token, fn)
    "add": (2, torch.add),
    "sub": (3, torch.sub),
    "mul": (4, torch.mul),
}


@dataclass(frozen=True)
class ModularOptions(StreamOptions):
    """One experience per entry of ``ops`` (add, sub, mul); level l has terms
    interpolated from ``min_terms`` to ``max_terms``; numbers are mod ``modulus``."""

    ops: tuple[str, ...] = ("add", "sub", "mul")
    modulus: int = 13
    min_terms: int = 2
    max_terms: int = 4

    def shape(self) -> TaskShape:
        self.validate()
        if isinstance(self.ops, str) or not isinstance(self.ops, (list, tuple)) or not self.ops:
            raise ConfigError(f"{OPTION}.ops", f"must be a non-empty list of {'|'.join(OPS)}, got {self.ops!r}")
        for i, op in enumerate(self.ops):
            if op not in OPS:
                raise ConfigError(f"{OPTION}.ops[{i}]", f"unknown operation {op!r}; known: {', '.join(OPS)}")
        check_int("modulus", self.modulus, 2)
        self.knob("min_terms", "max_terms")
        check_int("min_terms", self.min_terms, 2)
        return self.token_shape(2 * self.max_terms, NUMBERS + self.modulus)


@register_task("modular_arithmetic", shape=lambda **o: ModularOptions(**o).shape(), options=ModularOptions,
               description="(a op b op ...) mod p; difficulty = number of terms")
def modular_arithmetic(seed: int = 0, **options) -> Task:
    """Modular arithmetic: ``PAD... a1 op a2 op ... aM =``, right-aligned so the answer
    always sits at the final position (the ``=``), whose label is
    ``((a1 op a2) op a3 ...) mod p`` folded left to right, as token ``5 + result``.
    Tokens: 1 ``=``, 2 add, 3 sub, 4 mul; numbers ``5 + [0, p)``.
    """
    opts = ModularOptions(**options)
    shape, terms_at, p = opts.shape(), opts.knob("min_terms", "max_terms"), opts.modulus
    t = shape.seq_len

    def generate(e: int, level: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        m = terms_at[level]
        token, fn = OPS[opts.ops[e]]
        numbers = torch.randint(0, p, (n, m), generator=g)                  # (N, M)
        result = numbers[:, 0]
        for k in range(1, m):
            result = torch.remainder(fn(result, numbers[:, k]), p)
        x = torch.full((n, t), PAD, dtype=torch.long)
        y = torch.full_like(x, IGNORE)
        start = t - 2 * m
        x[:, start:t - 1:2] = numbers + NUMBERS
        x[:, start + 1:t - 1:2] = token
        x[:, t - 1] = EQUALS
        y[:, t - 1] = result + NUMBERS
        return x, y

    def classes(e: int) -> tuple[int, ...]:
        return tuple(range(NUMBERS, NUMBERS + p))

    return build_stream("modular_arithmetic", seed, opts, shape, len(opts.ops), generate, classes)
