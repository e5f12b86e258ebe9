"""Jensen–Shannon divergence of two feature-frequency profiles, with its A/A expectation.

A profile is the distribution of firings over features (``fired / fired.sum()``). Finite samples
make even identical sources diverge a little, so :func:`null_divergence` estimates what two
samples of the *same* source of these sizes would give (parametric bootstrap from the pooled
frequencies, seeded): a divergence is only news when it clearly exceeds that.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

NULL_REPLICATES = 4  # the mean to about two digits; only quoted in the message


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in bits (0 identical, 1 disjoint) of two count vectors.

    >>> js_divergence(np.array([1, 0]), np.array([0, 1]))
    1.0
    >>> js_divergence(np.array([2, 2]), np.array([1, 1]))
    0.0
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    return float(max(0.0, 0.5 * _kl(p, m) + 0.5 * _kl(q, m)))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / m[nz])))


def null_divergence(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, seed: int = 0) -> float:
    """Mean JS divergence of A/A samples of sizes ``n_a``, ``n_b`` from the pooled frequencies."""
    rng = np.random.default_rng(seed)
    pooled = np.clip((np.asarray(a) + np.asarray(b)) / (n_a + n_b), 0.0, 1.0)
    values = [
        js_divergence(rng.binomial(n_a, pooled), rng.binomial(n_b, pooled))
        for _ in range(NULL_REPLICATES)
    ]
    return float(np.mean(values))
