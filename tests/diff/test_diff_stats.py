"""Per-feature statistics against hand computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from saewatch.diff.divergence import js_divergence, null_divergence
from saewatch.diff.stats import (
    bh_qvalues,
    exact_pvalues,
    feature_tests,
    needs_exact,
    smoothed_log_odds,
    z_pvalues,
)


def test_smoothed_log_odds_by_hand() -> None:
    # baseline 2 of 10, candidate 6 of 10: log((6.5/4.5) / (2.5/8.5))
    expected = math.log((6.5 / 4.5) / (2.5 / 8.5))
    assert smoothed_log_odds(np.array([2]), 10, np.array([6]), 10)[0] == pytest.approx(expected)
    assert smoothed_log_odds(np.array([0]), 10, np.array([0]), 10)[0] == 0.0


def test_bh_qvalues_by_hand() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # q_(i) = min_{j>=i} p_(j) * m / j
    expected = [0.01, 0.04, 0.084, 0.084, 0.084, 0.1, 0.10571, 0.216, 0.216, 0.216]
    assert bh_qvalues(p).round(5).tolist() == pytest.approx(expected, abs=1e-5)
    shuffled = np.random.default_rng(0).permutation(len(p))
    assert bh_qvalues(p[shuffled]) == pytest.approx(bh_qvalues(p)[shuffled])


@pytest.mark.parametrize(("a", "n_a", "b", "n_b"),
                         [(0, 10, 5, 10), (3, 40, 9, 35), (7, 100, 1, 120), (2, 5, 2, 5)])
def test_exact_test_matches_scipy_fisher(a: int, n_a: int, b: int, n_b: int) -> None:
    table = [[b, n_b - b], [a, n_a - a]]
    greater = stats.fisher_exact(table, alternative="greater").pvalue
    less = stats.fisher_exact(table, alternative="less").pvalue
    got = exact_pvalues(np.array([a]), n_a, np.array([b]), n_b)[0]
    assert got == pytest.approx(min(1.0, 2 * min(greater, less)))


def test_z_test_by_hand() -> None:
    # 40/100 vs 60/100: pooled 0.5, se = sqrt(.25 * .02) = 0.0707, z = 2.828
    p = z_pvalues(np.array([40]), 100, np.array([60]), 100)[0]
    assert p == pytest.approx(2 * stats.norm.sf(0.2 / math.sqrt(0.25 * 0.02)))
    assert z_pvalues(np.array([0]), 50, np.array([0]), 50)[0] == 1.0


def test_exact_is_used_only_for_small_expected_cells() -> None:
    a, b = np.array([1, 30, 199]), np.array([2, 40, 198])
    assert needs_exact(a, 200, b, 200, 10.0).tolist() == [True, False, True]
    t = feature_tests(a, 200, b, 200)
    assert t.exact.tolist() == [True, False, True]
    assert t.freq_a.tolist() == [0.005, 0.15, 0.995]
    with pytest.raises(ValueError):
        feature_tests(a, 0, b, 200)


def test_js_divergence_by_hand() -> None:
    # p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): m = (1/4, 1/2, 1/4); KL(p||m) = 1/2*log2(2) = 1/2
    assert js_divergence(np.array([1, 1, 0]), np.array([0, 1, 1])) == pytest.approx(0.5)
    assert js_divergence(np.zeros(3), np.ones(3)) == 0.0


def test_null_divergence_is_small_and_shrinks_with_sample_size() -> None:
    rng = np.random.default_rng(0)
    freq = rng.uniform(0, 0.2, 500)
    small = null_divergence(freq * 200, 200, freq * 200, 200)
    large = null_divergence(freq * 20_000, 20_000, freq * 20_000, 20_000)
    assert 0 < large < small < 0.05
