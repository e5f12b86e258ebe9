"""Always-valid drift alarm: a mixture SPRT per feature, Bonferroni over features.

The verdict is re-evaluated every few seconds on growing counts; a fixed-sample test checked that
often would fire on A/A streams sooner or later. For each feature the mixture sequential
probability ratio test of Johari, Pekelis & Walsh (2017) for a difference of two proportions,

    Λ = sqrt(V / (V + τ²)) · exp(τ² Δ² / (2 V (V + τ²))),

with ``Δ = p̂_b - p̂_a``, the null variance ``V = p̄(1-p̄)(1/n_a + 1/n_b)`` (pooled ``p̄``) and a
normal mixture ``N(0, τ²)`` over the true difference, is (asymptotically) a nonnegative martingale
under "no difference", computed from the current counts only. By Ville's inequality
``P(sup_t Λ_t ≥ 1/α') ≤ α'``; with ``α' = α / d_sae`` (Bonferroni) the probability that *any*
feature *ever* alarms on an A/A stream is at most ``α`` — however often the verdict is looked at.
Features with fewer than ``MIN_EVENTS`` firings (or non-firings) are not tested: the normal
approximation is poor there, and this only costs power.

References
----------
Johari, R., Pekelis, L., Walsh, D. (2017). Always valid inference: bringing sequential analysis
to A/B testing. arXiv:1512.04922.
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

MIN_EVENTS = 10  # firings and non-firings a feature needs before its normal approximation is used


def msprt_log_evidence(
    a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, tau: float = 0.2
) -> np.ndarray:
    """``log Λ`` per feature (0 where the feature is not tested yet).

    >>> lam = msprt_log_evidence(np.array([50, 50]), 1000, np.array([50, 150]), 1000)
    >>> bool(lam[0] < 0), bool(lam[1] > 10)
    (True, True)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    fired = a + b
    total = n_a + n_b
    pooled = fired / total
    v = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    tested = (fired >= MIN_EVENTS) & (total - fired >= MIN_EVENTS)
    t2 = tau * tau
    delta = b / n_b - a / n_a
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lam = 0.5 * np.log(v / (v + t2)) + t2 * delta**2 / (2 * v * (v + t2))
    return np.where(tested, log_lam, 0.0)


def alarm_threshold(alpha: float, n_features: int) -> float:
    """``log(n_features / alpha)``: the Bonferroni-Ville threshold on ``log Λ``.

    >>> round(alarm_threshold(0.01, 100), 4)
    9.2103
    """
    return math.log(n_features / alpha)


def sequential_alarms(
    a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, alpha: float, tau: float = 0.2,
    n_tests: int | None = None,
) -> np.ndarray:
    """Boolean mask of the features whose always-valid test has rejected at family level α.

    ``n_tests`` is the size of the Bonferroni family (default: these features alone); a larger
    one shares α with other tests, such as the text descriptors'.
    """
    family = len(a) if n_tests is None else n_tests
    return msprt_log_evidence(a, n_a, b, n_b, tau) >= alarm_threshold(alpha, family)
