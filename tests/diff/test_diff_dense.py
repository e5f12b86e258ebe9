"""The dense MMD baseline: calibrated under the null, powerful on a shift."""

from __future__ import annotations

import numpy as np
import pytest

from saewatch.diff.dense import mmd_test


def test_null_p_values_are_roughly_uniform() -> None:
    rng = np.random.default_rng(0)
    p = [mmd_test(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)), 100, seed=i).p_value
         for i in range(20)]
    assert sum(v < 0.05 for v in p) <= 3 and np.mean(p) > 0.3


def test_detects_a_mean_shift_and_rejects_tiny_samples() -> None:
    rng = np.random.default_rng(1)
    r = mmd_test(rng.normal(size=(50, 8)), rng.normal(0.7, size=(50, 8)), 200)
    assert r.p_value < 0.01 and r.statistic > 0 and r.bandwidth > 0
    with pytest.raises(ValueError):
        mmd_test(np.zeros((1, 2)), np.zeros((5, 2)))
