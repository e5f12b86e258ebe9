"""Per-feature two-sample statistics on document frequencies, vectorised over all features.

For feature ``j`` the baseline fired in ``a`` of ``n_a`` documents and the candidate in ``b`` of
``n_b``. Tests are two-sided. Where counts are small (the smallest expected cell of the 2×2 table
is below ``exact_below``) the p-value is Fisher's exact test — conditional on ``a + b``, ``b`` is
hypergeometric — with the two-sided p-value taken as twice the smaller tail (the "central" rule,
capped at 1); elsewhere the pooled two-proportion z-test, whose normal approximation is good there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

logger = logging.getLogger(__name__)

SMOOTHING = 0.5  # Haldane-Anscombe: finite log-odds when a feature never fired on one side


@dataclass(frozen=True)
class FeatureTests:
    """Per-feature statistics of one comparison (arrays of length ``d_sae``)."""

    freq_a: np.ndarray
    freq_b: np.ndarray
    log_odds: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    exact: np.ndarray  # True where the exact test was used


def smoothed_log_odds(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int) -> np.ndarray:
    """Log odds ratio of candidate vs baseline with +0.5 in every cell.

    >>> round(float(smoothed_log_odds(np.array([1]), 4, np.array([3]), 4)[0]), 4)
    1.6946
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    s = SMOOTHING
    return np.log((b + s) / (n_b - b + s)) - np.log((a + s) / (n_a - a + s))


def exact_pvalues(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int) -> np.ndarray:
    """Two-sided Fisher exact p-values (central rule: twice the smaller one-sided p).

    Vectorised: the hypergeometric pmf of every feature's support is built from log-gamma values
    in one array (features sorted by support size and processed in blocks to bound memory). A
    feature that fired in most documents is tested on its non-firings instead (the same test,
    tails swapped), so supports stay as small as the rarer side.

    >>> float(exact_pvalues(np.array([0]), 10, np.array([10]), 10)[0]) < 1e-4
    True
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    total = n_a + n_b
    fired = a + b
    flip = fired > total - fired
    m = np.where(flip, total - fired, fired)
    x = np.where(flip, n_b - b, b)
    lower, upper = np.ones(len(a)), np.ones(len(a))
    order = np.argsort(m, kind="stable")
    width = m[order] + 1
    pos = 0
    while pos < len(order):
        end = min(len(order), pos + max(1, EXACT_BLOCK // int(width[pos])))
        # The block costs (its largest width) x (its rows); both grow with the row count.
        cost = width[pos:end] * np.arange(1, end - pos + 1)
        end = pos + max(1, int(np.searchsorted(cost, EXACT_BLOCK, side="right")))
        rows = order[pos:end]
        lower[rows], upper[rows] = _tails(m[rows], x[rows], n_a, n_b)
        pos = end
    lower, upper = np.where(flip, upper, lower), np.where(flip, lower, upper)
    return np.minimum(1.0, 2.0 * np.minimum(lower, upper))


EXACT_BLOCK = 2_000_000  # pmf entries per block: ~16 MB of float64


def _tails(m: np.ndarray, x: np.ndarray, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """``P(X <= x)`` and ``P(X >= x)`` for ``X ~ Hypergeom(n_a + n_b, n_b, m)``, row-wise."""
    k = np.arange(int(m.max()) + 1)[None, :]
    mm = m[:, None]
    ok = (k <= mm) & (k <= n_b) & (mm - k <= n_a)
    kk, rest = np.where(ok, k, 0), np.where(ok, mm - k, 0)
    log_pmf = (_log_comb(n_b, kk) + _log_comb(n_a, rest) - _log_comb(n_a + n_b, mm))
    pmf = np.where(ok, np.exp(log_pmf), 0.0)
    below = np.where(k <= x[:, None], pmf, 0.0).sum(1)
    above = np.where(k >= x[:, None], pmf, 0.0).sum(1)
    return np.minimum(below, 1.0), np.minimum(above, 1.0)


def _log_comb(n: int | np.ndarray, k: np.ndarray) -> np.ndarray:
    # scipy is untyped: name the array type once here.
    out: np.ndarray = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    return out


def z_pvalues(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int) -> np.ndarray:
    """Two-sided pooled two-proportion z-test p-values (1 where the pooled rate is 0 or 1)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled = (a + b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (b / n_b - a / n_a) / se, 0.0)
    p: np.ndarray = 2.0 * stats.norm.sf(np.abs(z))
    return p


def needs_exact(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, exact_below: float) -> np.ndarray:
    """Whether the smallest expected cell of each feature's 2×2 table is below ``exact_below``."""
    fired = np.asarray(a, dtype=np.float64) + b
    total = n_a + n_b
    smallest = np.minimum(fired, total - fired) * min(n_a, n_b) / total
    below: np.ndarray = smallest < exact_below
    return below


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) over all entries of ``p``.

    >>> bh_qvalues(np.array([0.01, 0.04, 0.03, 0.5])).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.5]
    """
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def feature_tests(
    a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, exact_below: float = 10.0
) -> FeatureTests:
    """All per-feature statistics: frequencies, log-odds, p (exact or z) and BH q-values.

    >>> t = feature_tests(np.array([5, 50]), 100, np.array([5, 90]), 100)
    >>> t.q_value.round(6).tolist(), t.exact.tolist()
    ([1.0, 0.0], [True, False])
    """
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both sides need at least one document")
    exact = needs_exact(a, n_a, b, n_b, exact_below)
    p = np.ones(len(a))
    if exact.any():
        p[exact] = exact_pvalues(a[exact], n_a, b[exact], n_b)
    if (~exact).any():
        p[~exact] = z_pvalues(a[~exact], n_a, b[~exact], n_b)
    return FeatureTests(
        freq_a=np.asarray(a) / n_a, freq_b=np.asarray(b) / n_b,
        log_odds=smoothed_log_odds(a, n_a, b, n_b), p_value=p, q_value=bh_qvalues(p),
        exact=exact,
    )
