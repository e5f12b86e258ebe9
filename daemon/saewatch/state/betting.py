"""One sequential two-sample test by betting over SAE codes and text descriptors.

The verdict the daemon alarms on pools the evidence of *all* features and descriptors in one
anytime-valid test, instead of asking whether any single feature moved (a Bonferroni family of
4,096 tests, which a dense two-sample test beats because it pools). The construction follows
Podkopaev, Blöbaum, Kasiviswanathan & Ramdas (2023, "Sequential kernelized independence testing"
/ "Sequential predictive two-sample and independence testing") and Shekhar & Ramdas (2023,
"Nonparametric two-sample testing by betting"):

* events of the two sides are taken in **pairs** ``(a, b)``, one of each, in arrival order (a
  bounded queue per side holds the unpaired ones; a release's candidate is paired with the
  baseline's last events, so the test works for a release as well as for a canary);
* before a pair is seen, a **witness** ``w`` is fitted on the pairs before it only: the
  difference of the two sides' mean feature vectors, each dimension divided by its pooled
  variance (plus a floor that keeps rare features from dominating) and shrunk towards 0 by its
  standard error — a diagonal linear discriminant (the floor and shrinkage were chosen on
  simulated sparse streams: they halve the delay against the plain discriminant);
* the pair's payoff ``s = tanh(score(b) - score(a))`` with ``score(x) = w · φ(x)`` scaled by the
  mean absolute score difference of earlier pairs (also fitted on the past only). Under "both
  sides come from one distribution" ``a`` and ``b`` are exchangeable given the past, ``s`` is odd
  in the swap, so ``E[s | past] = 0``;
* the wealth of a bettor staking a fixed fraction ``λ`` is ``Π (1 + λ s_t)``: a nonnegative
  martingale under the null. The e-process is the average over a grid of ``λ`` (an average of
  test martingales is one), so no fraction needs tuning.

By Ville's inequality ``P(sup_t E_t ≥ 1/α) ≤ α`` under the null: the alarm (the running peak of
``E`` crossing ``1/α``) is valid however often it is looked at. φ(x) is the event's present SAE
features (value 1) and its descriptors as ``log1p`` values.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

# Betting fractions mixed with equal weight: 0.8 pays when the witness is right early, 0.025
# when the evidence is faint; a payoff s in [-1, 1] keeps every 1 + λ s > 0.
LAMBDAS = 0.8 * 0.5 ** np.arange(6)
FEATURE_FLOOR = 0.1  # added to a feature's pooled variance: a feature seen once weighs little
SHRINK = 4.0  # squared z of a witness difference that gets no weight (see _weights)
DESCRIPTOR_FLOOR = 0.01  # the same for a descriptor's log1p value (variances ~0.1-1)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the test keeps of one event: its present features and its descriptor values."""

    features: np.ndarray  # int32 feature ids
    descriptors: np.ndarray  # float64 log1p descriptor values


def pack(observations: Iterable[Observation], n_descriptors: int) -> dict[str, np.ndarray]:
    """Observations as three arrays (CSR feature ids, descriptor rows): a snapshot stores a
    queue of a thousand events as three npz members, not three thousand.

    >>> obs = [Observation(np.array([1, 3], np.int32), np.array([0.5])),
    ...        Observation(np.array([], np.int32), np.array([2.0]))]
    >>> [o.features.tolist() for o in unpack(pack(obs, 1))]
    [[1, 3], []]
    """
    rows = list(observations)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(o.features) for o in rows])
    features = (np.concatenate([o.features for o in rows]) if rows
                else np.zeros(0)).astype(np.int32)
    desc = (np.stack([o.descriptors for o in rows]) if rows
            else np.zeros((0, n_descriptors))).astype(np.float64)
    return {"indptr": indptr, "features": features, "descriptors": desc}


def unpack(data: dict[str, Any]) -> list[Observation]:
    indptr = np.asarray(data["indptr"], dtype=np.int64)
    features = np.asarray(data["features"], dtype=np.int32)
    desc = np.asarray(data["descriptors"], dtype=np.float64)
    return [Observation(features[indptr[i]:indptr[i + 1]].copy(), desc[i].copy())
            for i in range(len(indptr) - 1)]


class PairedBet:
    """A sequential two-sample test by betting between a baseline and a candidate.

    Parameters
    ----------
    d_sae
        Features per code.
    n_descriptors
        Descriptor values per event.
    queue_capacity
        Unpaired events kept per side (the oldest go first); a release's candidate can be
        paired with at most this many of the baseline's last events.

    Examples
    --------
    Candidate events carry feature 0 and are longer; the baseline's never have it:

    >>> bet = PairedBet(d_sae=4, n_descriptors=1, queue_capacity=100)
    >>> rng = np.random.default_rng(0)
    >>> for i in range(60):
    ...     bet.add(0, Observation(np.array([1, 2][: 1 + i % 2], np.int32), np.array([3.0])))
    ...     bet.add(1, Observation(np.array([0, 2], np.int32), np.array([rng.normal(4, 1)])))
    >>> bet.pairs, bet.peak_log_evidence > math.log(100)
    (60, True)

    The same stream on both sides gains no evidence:

    >>> aa = PairedBet(d_sae=4, n_descriptors=1, queue_capacity=100)
    >>> for i in range(60):
    ...     for side in (0, 1):
    ...         aa.add(side, Observation(np.array([int(rng.integers(4))], np.int32),
    ...                                  np.array([rng.normal(3, 1)])))
    >>> aa.pairs, aa.peak_log_evidence < math.log(100)
    (60, True)
    """

    def __init__(self, d_sae: int, n_descriptors: int, queue_capacity: int) -> None:
        self.d_sae = d_sae
        self.n_descriptors = n_descriptors
        self.queue_capacity = queue_capacity
        self._queues: tuple[deque[Observation], deque[Observation]] = (
            deque(maxlen=queue_capacity), deque(maxlen=queue_capacity))
        self._feature_sums = np.zeros((2, d_sae), dtype=np.float64)
        self._desc_sums = np.zeros((2, n_descriptors), dtype=np.float64)
        self._desc_squares = np.zeros(n_descriptors, dtype=np.float64)
        self._pairs = 0
        self._scale_sum = 0.0  # sum of |raw score difference| over scored pairs
        self._log_wealth = np.zeros(len(LAMBDAS), dtype=np.float64)
        self._peak = 0.0

    @property
    def pairs(self) -> int:
        """Pairs bet on so far."""
        return self._pairs

    @property
    def log_evidence(self) -> float:
        """``log E`` now: the log of the mixture wealth."""
        return _log_mean_exp(self._log_wealth)

    @property
    def peak_log_evidence(self) -> float:
        """The running maximum of ``log E`` (0 at the start): ``≥ log(1/α)`` is the alarm."""
        return self._peak

    def pending(self, side: int) -> int:
        """Unpaired events waiting on ``side`` (0 baseline, 1 candidate)."""
        return len(self._queues[side])

    def add(self, side: int, observation: Observation) -> None:
        """Queue one event of ``side``; bet on every pair that can now be formed."""
        self._queues[side].append(observation)
        base, cand = self._queues
        while base and cand:
            self._bet(base.popleft(), cand.popleft())

    def _score(self, obs: Observation) -> float:
        """``w · φ(obs)``: the witness of the pairs so far at the event's features and
        descriptors."""
        n = self._pairs
        sums = self._feature_sums[:, obs.features]
        mean_a, mean_b = sums[0] / n, sums[1] / n
        pooled = (mean_a + mean_b) / 2
        features = _weights(mean_b - mean_a, pooled * (1 - pooled), n, FEATURE_FLOOR)
        d_a, d_b = self._desc_sums[0] / n, self._desc_sums[1] / n
        d_var = np.maximum(self._desc_squares / (2 * n) - ((d_a + d_b) / 2) ** 2, 0.0)
        descriptors = _weights(d_b - d_a, d_var, n, DESCRIPTOR_FLOOR) * obs.descriptors
        return float(features.sum() + descriptors.sum())

    def _bet(self, a: Observation, b: Observation) -> None:
        if self._pairs > 0:
            raw = self._score(b) - self._score(a)
            if self._scale_sum > 0:
                payoff = math.tanh(raw / (self._scale_sum / self._pairs))
                self._log_wealth += np.log1p(LAMBDAS * payoff)
                self._peak = max(self._peak, self.log_evidence)
            self._scale_sum += abs(raw)
        # Only now does the pair join the witness: it was bet on before being learnt from.
        self._feature_sums[0, a.features] += 1.0
        self._feature_sums[1, b.features] += 1.0
        self._desc_sums[0] += a.descriptors
        self._desc_sums[1] += b.descriptors
        self._desc_squares += a.descriptors**2 + b.descriptors**2
        self._pairs += 1

    # --- snapshot / restore / merge -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "d_sae": self.d_sae, "n_descriptors": self.n_descriptors,
            "queue_capacity": self.queue_capacity,
            "queues": [pack(q, self.n_descriptors) for q in self._queues],
            "feature_sums": self._feature_sums.copy(), "desc_sums": self._desc_sums.copy(),
            "desc_squares": self._desc_squares.copy(), "pairs": self._pairs,
            "scale_sum": self._scale_sum, "log_wealth": self._log_wealth.copy(),
            "peak": self._peak,
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> PairedBet:
        bet = cls(int(data["d_sae"]), int(data["n_descriptors"]), int(data["queue_capacity"]))
        for side, rows in enumerate(data["queues"]):
            bet._queues[side].extend(unpack(rows))
        bet._feature_sums = np.array(data["feature_sums"], dtype=np.float64)
        bet._desc_sums = np.array(data["desc_sums"], dtype=np.float64)
        bet._desc_squares = np.array(data["desc_squares"], dtype=np.float64)
        bet._pairs = int(data["pairs"])
        bet._scale_sum = float(data["scale_sum"])
        bet._log_wealth = np.array(data["log_wealth"], dtype=np.float64)
        bet._peak = float(data["peak"])
        return bet

    def merge(self, other: Self) -> None:
        """Fold in the same test run by another replica on other events.

        Each wealth is a test martingale of its own events, independent of the other's under
        the null, so their **average** is one too; from here on it grows with the pairs of
        both replicas' later events. The witness' sums add. The peaks are not combined: the
        running maximum of an average is not known from the two maxima, so the merged peak
        starts at the merged wealth (conservative: it can only delay an alarm).
        """
        self._log_wealth = np.logaddexp(self._log_wealth, other._log_wealth) - math.log(2)
        self._peak = max(0.0, self.log_evidence)
        self._feature_sums += other._feature_sums
        self._desc_sums += other._desc_sums
        self._desc_squares += other._desc_squares
        self._pairs += other._pairs
        self._scale_sum += other._scale_sum
        for mine, theirs in zip(self._queues, other._queues, strict=True):
            mine.extend(theirs)
        base, cand = self._queues
        while base and cand:
            self._bet(base.popleft(), cand.popleft())


def _weights(delta: np.ndarray, variance: np.ndarray, n: int, floor: float) -> np.ndarray:
    """Witness weights: the mean difference over the pooled variance (plus ``floor``), shrunk
    towards 0 by its own noise: a difference within ``sqrt(SHRINK)`` standard errors of 0 gets
    no weight (James–Stein's positive part), so hundreds of features that differ by chance
    after a few pairs do not drown the few that really moved."""
    z2 = delta**2 * n / (2 * (variance + 1e-6))
    keep = np.maximum(0.0, 1.0 - SHRINK / np.maximum(z2, 1e-12))
    out: np.ndarray = delta / (variance + floor) * keep
    return out


def _log_mean_exp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + math.log(float(np.mean(np.exp(values - top))))
