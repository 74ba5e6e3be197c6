"""Synthetic tasks with a known answer for dynamic blocks: how far a token must look
(``span_range``) and which tokens are hard (``hard_easy``).

A learned span or a token-dependent k has a right value only when the task says what
each answer needs; these two say it by construction, so a benchmark or a test can
compare what a model learned with what the task needed:

* ``span_range``: every answer depends on exactly one token at a known distance d
  before it, and on nothing farther; d is set per experience (``distances``), so a
  stream can ask a later experience for a longer range than an earlier one.
* ``hard_easy``: a known share of the answer positions are hard (the sum of several
  inputs, ``hard_terms`` of them) and the rest trivial (a copy of one input);
  ``hard_positions(x)`` reads the label of every position off the input (its marker
  token).

Same conventions as ``synthetic``: tokens (T,) long with 0 padding, labels -100 except
at answer positions, ``task_il`` streams, seeded i.i.d. samples. Shape legend: N
samples, T tokens, M numbers, Q answer positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError

from .base import Task, register_task
from .images import OPTION, check_fraction, check_int
from .synthetic import IGNORE, PAD, StreamOptions, build_stream, random_distinct


def _int_tuple(name: str, value, low: int, high: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{OPTION}.{name}", f"must be a non-empty list of integers, got {value!r}")
    for i, v in enumerate(value):
        check_int(f"{name}[{i}]", v, low, high)
    return tuple(value)


# --- range: one dependency at a known distance --------------------------------------
QUERY, RANGE_NOISE = 1, 2


@dataclass(frozen=True)
class SpanRangeOptions(StreamOptions):
    """One experience per entry of ``distances`` (tokens from the answer back to the
    token it copies); ``spread`` > 0 draws each sample's distance from
    [d - spread, d] instead (a known range); ``noise`` filler tokens and ``symbols``
    values, shared by every experience (only the distance changes)."""

    levels: int = 1
    distances: tuple[int, ...] = (16, 64, 192)
    spread: int = 0
    seq_len: int = 256
    noise: int = 16
    symbols: int = 8

    def shape(self) -> TaskShape:
        self.validate()
        check_int("seq_len", self.seq_len, 2)
        _int_tuple("distances", self.distances, 1, self.seq_len - 1)
        check_int("spread", self.spread, 0, min(self.distances) - 1)
        check_int("noise", self.noise, 1)
        check_int("symbols", self.symbols, 2)
        return self.token_shape(self.seq_len, RANGE_NOISE + self.noise + self.symbols)


@register_task("span_range", shape=lambda **o: SpanRangeOptions(**o).shape(), options=SpanRangeOptions,
               description="copy the token a known distance back; distance set per experience")
def span_range(seed: int = 0, **options) -> Task:
    """``noise ... v noise ... QUERY noise ...``: one value token v at p - d, the
    query at p (uniform in [d, T)); the label at p is v. Every other token is random
    filler, so the answer needs a look back of exactly d tokens and nothing farther
    (attention that sees d tokens finds v by content: it is the only value token).
    Tokens: 1 query, ``2 + [0, noise)`` filler, then the values. ``levels`` has no
    effect (every sample of an experience is alike).
    """
    opts = SpanRangeOptions(**options)
    shape, t = opts.shape(), opts.seq_len
    first_value = RANGE_NOISE + opts.noise

    def generate(e: int, level: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        d = opts.distances[e] - torch.randint(0, opts.spread + 1, (n,), generator=g)   # (N,)
        p = d + (torch.rand(n, generator=g) * (t - d)).long()                         # (N,) in [d, T)
        x = torch.randint(0, opts.noise, (n, t), generator=g) + RANGE_NOISE           # (N, T)
        values = torch.randint(0, opts.symbols, (n,), generator=g) + first_value
        rows = torch.arange(n)
        x[rows, p - d], x[rows, p] = values, QUERY
        y = torch.full_like(x, IGNORE)
        y[rows, p] = values
        return x, y

    classes = tuple(range(first_value, first_value + opts.symbols))
    return build_stream("span_range", seed, opts, shape, len(opts.distances), generate, lambda e: classes)


# --- difficulty: a known share of hard answer positions -----------------------------
EASY, HARD, DIGITS = 1, 2, 3


@dataclass(frozen=True)
class HardEasyOptions(StreamOptions):
    """``terms`` numbers mod ``modulus`` then ``answers`` marked positions, of which
    ``round(hard_share * answers)`` are hard; one experience per ``n_experiences``,
    each with its own number tokens. A hard answer sums the first ``hard_terms``
    numbers (0, the default: all ``terms``). Fewer terms make the hard answers
    learnable by a small model in a short CPU run (a sum of 2 has p^2 cases, of 4
    p^4) while the easy ones stay a copy, so the two still differ in difficulty."""

    levels: int = 1
    n_experiences: int = 2
    terms: int = 4
    answers: int = 8
    hard_share: float = 0.25
    modulus: int = 10
    hard_terms: int = 0

    def shape(self) -> TaskShape:
        self.validate()
        check_int("n_experiences", self.n_experiences, 1)
        check_int("terms", self.terms, 2)
        check_int("answers", self.answers, 1)
        check_fraction("hard_share", self.hard_share)
        check_int("modulus", self.modulus, 2)
        check_int("hard_terms", self.hard_terms, 0, self.terms)
        if self.hard_terms == 1:
            raise ConfigError(f"{OPTION}.hard_terms", "must be 0 (every term) or >= 2: "
                              "a sum of 1 term is the easy answer's copy")
        return self.token_shape(self.terms + self.answers, DIGITS + self.modulus * self.n_experiences)

    def hard_count(self) -> int:
        return int(round(self.hard_share * self.answers))

    def summed(self) -> int:
        """How many leading numbers a hard answer sums."""
        return self.hard_terms or self.terms


@register_task("hard_easy", shape=lambda **o: HardEasyOptions(**o).shape(), options=HardEasyOptions,
               description="answer positions labelled hard (a sum of terms) or easy (a copy)")
def hard_easy(seed: int = 0, **options) -> Task:
    """``a1 ... aM m1 ... mQ``: M numbers, then Q markers; an ``EASY`` marker's label
    is a1 (one look-up), a ``HARD`` marker's is (a1 + ... + ah) mod p with h =
    ``hard_terms`` (M by default: a composition of every input). Exactly ``round(hard_share * Q)`` markers of each row are hard,
    at random places. Tokens: 1 easy, 2 hard; experience e's numbers are
    ``3 + pe + [0, p)`` and its labels the same tokens.
    """
    opts = HardEasyOptions(**options)
    shape, m, q, p, h = opts.shape(), opts.terms, opts.answers, opts.modulus, opts.summed()

    def generate(e: int, level: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        numbers = torch.randint(0, p, (n, m), generator=g)                 # (N, M)
        hard = torch.zeros(n, q, dtype=torch.bool)
        hard.scatter_(1, random_distinct(n, opts.hard_count(), q, g), True)  # (N, Q)
        base = DIGITS + p * e
        x = torch.full((n, m + q), PAD, dtype=torch.long)
        x[:, :m] = numbers + base
        x[:, m:] = torch.where(hard, HARD, EASY)
        answer = torch.where(hard, numbers[:, :h].sum(dim=1, keepdim=True) % p, numbers[:, :1])
        y = torch.full_like(x, IGNORE)
        y[:, m:] = answer + base
        return x, y

    def classes(e: int) -> tuple[int, ...]:
        return tuple(range(DIGITS + p * e, DIGITS + p * (e + 1)))

    return build_stream("hard_easy", seed, opts, shape, opts.n_experiences, generate, classes)


def hard_positions(x: Tensor) -> Tensor:
    """(…, T) bool: the ``hard_easy`` answer positions that are hard (their marker)."""
    return x == HARD


def easy_positions(x: Tensor) -> Tensor:
    """(…, T) bool: the ``hard_easy`` answer positions that are easy."""
    return x == EASY
