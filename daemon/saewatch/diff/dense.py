"""A dense-embedding baseline: kernel two-sample test (MMD) on mean-pooled hidden states.

Used by the benchmarks to show what SAE diffs add: MMD says *whether* two samples of embeddings
differ, not *what* differs. Gaussian kernel with the median-distance bandwidth, unbiased MMD²,
p-value by permutation (seeded, ``(1 + #{perm ≥ obs}) / (1 + n_permutations)``).

References
----------
Gretton, A. et al. (2012). A kernel two-sample test. JMLR 13, 723–773.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenseTestResult:
    """The MMD² statistic, its permutation p-value and the kernel bandwidth used."""

    statistic: float
    p_value: float
    bandwidth: float


def _sq_dists(z: np.ndarray) -> np.ndarray:
    sq = (z * z).sum(1)
    dist: np.ndarray = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    return dist


def _mmd2(k: np.ndarray, is_x: np.ndarray) -> float:
    n, m = int(is_x.sum()), int((~is_x).sum())
    kxx, kyy, kxy = k[np.ix_(is_x, is_x)], k[np.ix_(~is_x, ~is_x)], k[np.ix_(is_x, ~is_x)]
    xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def mmd_test(
    x: np.ndarray, y: np.ndarray, n_permutations: int = 200, seed: int = 0
) -> DenseTestResult:
    """Permutation MMD test of ``x`` ``[n, d]`` against ``y`` ``[m, d]``.

    >>> rng = np.random.default_rng(0)
    >>> same = mmd_test(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), 100)
    >>> shifted = mmd_test(rng.normal(size=(60, 4)), rng.normal(1.0, size=(60, 4)), 100)
    >>> bool(same.p_value > 0.05), bool(shifted.p_value < 0.05)
    (True, True)
    """
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each sample needs at least two vectors")
    z = np.concatenate([x, y]).astype(np.float64)
    d2 = _sq_dists(z)
    bandwidth = float(np.sqrt(np.median(d2[np.triu_indices(len(z), 1)]) / 2.0)) or 1.0
    k = np.exp(-d2 / (2.0 * bandwidth**2))
    is_x = np.zeros(len(z), dtype=bool)
    is_x[: len(x)] = True
    observed = _mmd2(k, is_x)
    rng = np.random.default_rng(seed)
    exceed = sum(_mmd2(k, rng.permutation(is_x)) >= observed for _ in range(n_permutations))
    return DenseTestResult(observed, (1 + exceed) / (1 + n_permutations), bandwidth)
