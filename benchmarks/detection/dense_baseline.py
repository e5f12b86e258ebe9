"""The dense baseline: a kernel two-sample test (MMD) on mean-pooled hidden states, per look.

The Evidently/alibi-detect approach: embed each response (here the mean of the same hook
activations the SAE reads), and test whether the two samples differ with the unbiased MMD² and a
Gaussian kernel (median-distance bandwidth), as :func:`saewatch.diff.dense.mmd_test` does. A
stream is looked at as often as the SAE verdict, so a p-value threshold would need a correction
for the looks and would be coarse (permutation p-values bottom out at ``1/(1+P)``). Instead each
look gives a standardized statistic ``z = (MMD² - mean_perm) / sd_perm`` against ``P`` label
permutations, and the alarm threshold on ``z`` is *calibrated on the A/A streams* to the SAE
method's A/A false-alarm rate (:func:`calibrate`). That calibration is in-sample, which favours
the baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

PERMUTATIONS = 100


def pairwise_sq_dists(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    sq = (z * z).sum(1)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)


def mmd_z(d2: np.ndarray, n_x: int, rng: np.random.Generator,
          permutations: int = PERMUTATIONS) -> tuple[float, float]:
    """Unbiased MMD² of the first ``n_x`` rows of ``d2`` against the rest, and its z-score.

    Row 0 of the label matrix is the observed split; the others are permutations. For labels
    ``L`` (1 = x) the within-x kernel sum is ``diag(L K Lᵀ)`` minus the diagonal of ``K`` (ones).

    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(40, 3)), rng.normal(1.0, size=(40, 3))
    >>> from saewatch.diff.dense import mmd_test
    >>> stat, z = mmd_z(pairwise_sq_dists(np.vstack([x, y])), 40, rng)
    >>> bool(np.isclose(stat, mmd_test(x, y, 10).statistic)), bool(z > 3)
    (True, True)
    """
    n = len(d2)
    n_y = n - n_x
    upper = d2[np.triu_indices(n, 1)]
    bandwidth = float(np.sqrt(np.median(upper) / 2.0)) or 1.0
    k = np.exp(-d2 / (2.0 * bandwidth**2))
    labels = np.zeros((permutations + 1, n))
    labels[0, :n_x] = 1.0
    for row in range(1, permutations + 1):
        labels[row, rng.permutation(n)[:n_x]] = 1.0
    lk = labels @ k
    total = k.sum()
    xx = (lk * labels).sum(1) - n_x
    xy = (lk * (1.0 - labels)).sum(1)
    yy = total - xx - n_x - 2.0 * xy - n_y
    mmd2 = xx / (n_x * (n_x - 1)) + yy / (n_y * (n_y - 1)) - 2.0 * xy / (n_x * n_y)
    null = mmd2[1:]
    return float(mmd2[0]), float((mmd2[0] - null.mean()) / (null.std() or 1.0))


def look_z(xa: np.ndarray, xb: np.ndarray, points: Sequence[int], seed: int = 0) -> list[float]:
    """z at each look: the first ``m`` embeddings of each side, for ``m`` in ``points``."""
    m_max = max(points)
    d2_all = pairwise_sq_dists(np.vstack([xa[:m_max], xb[:m_max]]))
    rng = np.random.default_rng(seed)
    out = []
    for m in points:
        rows = np.r_[0:m, m_max : m_max + m]
        out.append(mmd_z(d2_all[np.ix_(rows, rows)], m, rng)[1])
    return out


def calibrate(aa_max_z: Sequence[float], false_alarms: int) -> float:
    """Threshold on z that makes exactly ``false_alarms`` A/A streams alarm (alarm: z > t)."""
    ordered = sorted(aa_max_z, reverse=True)
    if false_alarms >= len(ordered):
        return float("-inf")
    return float(ordered[false_alarms])


def first_crossing(z: Sequence[float], points: Sequence[int], threshold: float) -> int | None:
    return next((p for p, v in zip(points, z, strict=True) if v > threshold), None)
