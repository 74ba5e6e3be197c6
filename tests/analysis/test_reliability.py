"""The variance components behind a calibration's "seeds needed" and "r corrected".

Synthetic cells with known components (value = architecture effect + seed noise) are
the specification: the estimates recover them, the seeds the model asks for do give
two rankings that agree at the target tau, and the corrected correlation recovers the
correlation of the effects that the noise hides.
"""
import math

import numpy as np
import pytest

from dynas.analysis.calibration import kendall_tau
from dynas.analysis.reliability import Components, components, disattenuated, expected_tau

VAR_ARCH, VAR_SEED = 0.0004, 0.0016        # one seed's reliability 0.2


def cells(effects, seeds, rng, var_seed=VAR_SEED):
    return effects[:, None] + rng.normal(0, math.sqrt(var_seed), (len(effects), seeds))


def test_components_recover_the_architecture_and_seed_variances():
    rng = np.random.default_rng(0)
    c = components(cells(rng.normal(0.8, math.sqrt(VAR_ARCH), 4000), 3, rng))
    assert c.n == 4000 and c.seeds == 3
    assert c.var_seed == pytest.approx(VAR_SEED, rel=0.05)
    assert c.var_arch == pytest.approx(VAR_ARCH, rel=0.15)
    assert c.reliability(1) == pytest.approx(0.2, abs=0.03)


def test_the_seeds_needed_do_give_rankings_that_agree_at_the_target():
    rng = np.random.default_rng(1)
    need = Components(0, 2, VAR_SEED, VAR_ARCH).seeds_needed(0.7)
    k = math.ceil(need)
    assert 30 < k < 40                       # 0.891 * 0.8 / (0.2 * 0.109)
    effects = rng.normal(0, math.sqrt(VAR_ARCH), 3000)
    agree = lambda k: kendall_tau(cells(effects, k, rng).mean(axis=1), cells(effects, k, rng).mean(axis=1))
    assert agree(k) == pytest.approx(0.7, abs=0.03)
    assert agree(1) == pytest.approx(expected_tau(0.2), abs=0.03)
    assert agree(1) < 0.2


def test_seeds_needed_at_the_extremes():
    assert Components(10, 2, VAR_SEED, 0.0).seeds_needed(0.7) == math.inf          # nothing to rank
    assert Components(10, 2, 0.0, VAR_ARCH).seeds_needed(0.7) == 1.0               # no noise
    assert math.isnan(components(np.array([[0.5, np.nan], [0.6, np.nan]])).var_arch)  # one seed: unknown


@pytest.mark.parametrize("true_r", [1.0, 0.3, -0.4])
def test_the_corrected_correlation_recovers_the_effects_correlation(true_r):
    rng = np.random.default_rng(2)
    n = 40000
    low = rng.normal(0, 1, n)
    high = true_r * low + math.sqrt(1 - true_r ** 2) * rng.normal(0, 1, n)
    scale = math.sqrt(VAR_ARCH)
    a, b = cells(scale * low, 2, rng), cells(scale * high, 2, rng)
    raw = np.corrcoef(a.mean(axis=1), b.mean(axis=1))[0, 1]
    assert abs(raw) < abs(true_r) * 0.6 + 0.02                # the noise hides most of it
    assert disattenuated(a, b) == pytest.approx(true_r, abs=0.08)


def test_no_spread_beyond_the_seeds_gives_no_corrected_correlation():
    rng = np.random.default_rng(3)
    spread = cells(rng.normal(0, 0.05, 50), 2, rng)
    tied = np.tile([[0.7, 0.8]], (50, 1))                  # every architecture the same two values
    assert components(tied).var_arch == 0.0
    assert math.isnan(disattenuated(tied, spread))
    assert math.isnan(disattenuated(spread[:2], spread[:2]))  # fewer than 3 architectures
