"""The text_bpc benchmark's measurements on inputs whose answers are known."""
import math
import random
import zlib

import torch
from torch import nn

from benchmarks import text_bpc
from dynas.trainers.output import ModelOutput


class Uniform(nn.Module):
    """Equal logits over V symbols: log2 V bits on every character."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        return ModelOutput(torch.zeros(*x.shape, self.vocab), {}, {})


def test_a_uniform_model_costs_log2_v_bits_per_character():
    ids = torch.randint(2, 98, (1000,), generator=torch.Generator().manual_seed(0))
    held = {c: text_bpc.heldout_windows(ids[i:], 64, 0)[0] for i, c in enumerate(("a", "b"))}
    bpc, entry = text_bpc.heldout_bpc(Uniform(98), held, batch=4)
    assert all(math.isclose(v, math.log2(98), rel_tol=1e-6) for v in bpc.values())   # float32 logits
    assert entry and all(v == {} for v in entry.values()), entry    # no span, no router: nothing to record


def test_heldout_windows_cover_exactly_the_scored_characters():
    ids = torch.arange(2, 2 + 100) % 98
    data, covered = text_bpc.heldout_windows(ids, 16, 0)
    x, y = data.tensors
    assert x.shape == (6, 16) and torch.equal(covered, ids[:97])
    assert torch.equal(torch.cat([x[:, :1].flatten()[:1], y.flatten()]), covered)


def test_compressed_bits_are_the_compressors_output_in_bits():
    text = b"the cat sat on the mat. " * 40
    bits = text_bpc.compressed_bits(text)
    assert bits["zlib -9"] == 8 * len(zlib.compress(text, 9))
    assert all(b / len(text) < 1.0 for b in bits.values())          # repetitive: far below 8


def test_conditional_cost_of_a_repeat_is_small_and_of_noise_is_not():
    rng = random.Random(0)
    noise, other = (bytes(rng.randrange(256) for _ in range(4000)) for _ in range(2))
    repeat = text_bpc.conditional_bits(noise, noise)
    fresh = text_bpc.conditional_bits(noise, other)
    for name in text_bpc.COMPRESSORS:
        assert fresh[name] / len(other) > 7.5                       # random bytes: ~8 bits each
        assert repeat[name] < 0.6 * fresh[name]


def test_baselines_all_is_total_bits_over_total_characters():
    covered = {"a": torch.full((500,), 5), "b": torch.arange(2, 502) % 98}
    base = text_bpc.baselines(torch.arange(300) % 98, covered, conditional=False)["alone"]
    for name in text_bpc.COMPRESSORS:
        total = sum(text_bpc.compressed_bits(text_bpc.as_bytes(v))[name] for v in covered.values())
        assert math.isclose(base["all"][name], total / 1000)
        assert base["a"][name] < base["b"][name]


def test_learning_rate_warms_up_then_decays_to_its_floor():
    f = [text_bpc.lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert math.isclose(f[0], 0.1) and math.isclose(f[9], 1.0) and math.isclose(f[10], 1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and 0.1 <= f[-1] < 0.11


def test_spearman_of_monotone_reversed_and_constant_pairs():
    a = torch.tensor([1, 2, 2, 3, 4])
    assert math.isclose(text_bpc.spearman(a, a.float() ** 3), 1.0)
    assert math.isclose(text_bpc.spearman(a, -a.float()), -1.0)
    assert math.isnan(text_bpc.spearman(torch.full((5,), 2), a))


def test_a_spread_over_an_undefined_correlation_says_so():
    assert text_bpc.spread([math.nan, 0.5]) == "undefined"
    assert text_bpc.spread([1.0, 3.0], digits=1) == "2.0 ± 1.4"
