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
* before a pair is seen, a **witness** ``w`` is fitted on pairs before it only: the
  difference of the two sides' mean feature vectors, each dimension divided by its pooled
  variance (plus a floor that keeps rare features from dominating) and shrunk towards 0 by its
  standard error — a diagonal linear discriminant (the floor and shrinkage were chosen on
  simulated sparse streams: they halve the delay against the plain discriminant). It is
  refitted before every pair while the test is young and then once per chunk of up to 64
  pairs (:func:`refit_every`), on the pairs before the chunk: the payoffs of a whole chunk are
  then a few sparse products, and each still depends on the past only;
* the pair's payoff ``s = tanh(score(b) - score(a))`` with ``score(x) = w · φ(x)`` scaled by the
  mean absolute score difference of the pairs before the chunk (also fitted on the past). Under "both
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
from typing import Any, Self

import numpy as np

from saewatch.state.observations import (
    Observation,
    ObservationQueue,
    Rows,
    pack,
    pair_up,
    unpack,
    unpack_rows,
)

# Betting fractions mixed with equal weight: 0.8 pays when the witness is right early, 0.025
# when the evidence is faint; a payoff s in [-1, 1] keeps every 1 + λ s > 0.
LAMBDAS = 0.8 * 0.5 ** np.arange(6)
FEATURE_FLOOR = 0.1  # added to a feature's pooled variance: a feature seen once weighs little
SHRINK = 4.0  # squared z of a witness difference that gets no weight (see _weights)
DESCRIPTOR_FLOOR = 0.01  # the same for a descriptor's log1p value (variances ~0.1-1)
MAX_CHUNK = 64  # pairs bet on with one witness, once the test is old (see refit_every)


def refit_every(pairs: int) -> int:
    """Pairs bet on with the witness fitted after ``pairs`` pairs: every pair while the test is
    young (the witness changes fastest then), at most :data:`MAX_CHUNK` later, when one more
    pair moves it by ~1/pairs. Measured on simulated and real streams, detection takes the
    same number of pairs as refitting every pair.

    >>> [refit_every(n) for n in (0, 15, 16, 100, 511, 10_000)]
    [1, 1, 2, 12, 63, 64]
    """
    return max(1, min(MAX_CHUNK, pairs // 8))


__all__ = ["LAMBDAS", "Observation", "PairedBet", "pack", "refit_every", "unpack"]


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

    :meth:`extend` takes a batch of both sides at once, with the same result as :meth:`add`
    one event at a time:

    >>> one = PairedBet(d_sae=4, n_descriptors=1, queue_capacity=100)
    >>> events = [Observation(np.array([i % 4], np.int32), np.array([float(i % 3)]))
    ...           for i in range(90)]
    >>> sides = np.arange(90) % 3 % 2  # 0, 1, 0, 0, 1, 0, ...
    >>> for side, obs in zip(sides, events):
    ...     one.add(int(side), obs)
    >>> many = PairedBet(d_sae=4, n_descriptors=1, queue_capacity=100)
    >>> many.extend(sides, Rows.of(events, 1))
    >>> (many.pairs, many.pending(0)) == (one.pairs, one.pending(0)) == (30, 30)
    True
    >>> many.log_evidence == one.log_evidence
    True
    """

    def __init__(self, d_sae: int, n_descriptors: int, queue_capacity: int) -> None:
        self.d_sae = d_sae
        self.n_descriptors = n_descriptors
        self.queue_capacity = queue_capacity
        self._queues = (ObservationQueue(queue_capacity, n_descriptors),
                        ObservationQueue(queue_capacity, n_descriptors))
        self._feature_sums = np.zeros((2, d_sae), dtype=np.float64)
        self._desc_sums = np.zeros((2, n_descriptors), dtype=np.float64)
        self._desc_squares = np.zeros(n_descriptors, dtype=np.float64)
        self._pairs = 0
        self._scale_sum = 0.0  # sum of |raw score difference| over scored pairs
        self._log_wealth = np.zeros(len(LAMBDAS), dtype=np.float64)
        self._peak = 0.0
        # The witness bet with until pair number _fit_until (fitted on the pairs before it).
        self._fit_until = 0
        self._w_features = np.zeros(0, dtype=np.float64)  # empty: no witness yet (no pair)
        self._w_descriptors = np.zeros(0, dtype=np.float64)
        self._scale = 0.0  # mean |raw| of the pairs before the chunk; 0: nothing to scale by

    @property
    def pairs(self) -> int:
        """Pairs bet on so far."""
        return self._pairs

    @property
    def log_evidence(self) -> float:
        """``log E`` now: the log of the mixture wealth."""
        return float(_log_mean_exp(self._log_wealth[None, :])[0])

    @property
    def peak_log_evidence(self) -> float:
        """The running maximum of ``log E`` (0 at the start): ``≥ log(1/α)`` is the alarm."""
        return self._peak

    def pending(self, side: int) -> int:
        """Unpaired events waiting on ``side`` (0 baseline, 1 candidate)."""
        return len(self._queues[side])

    def add(self, side: int, observation: Observation) -> None:
        """Queue one event of ``side``; bet on every pair that can now be formed."""
        self.extend(np.array([side]), Rows.of([observation], self.n_descriptors))

    def extend(self, sides: np.ndarray, rows: Rows) -> None:
        """Queue events of both sides in arrival order (``sides[i]`` is the side of
        ``rows[i]``); bet on every pair formed, exactly as :meth:`add` one at a time would."""
        sides = np.asarray(sides, dtype=np.int64)
        self.extend_sides(sides, rows.select(np.flatnonzero(sides == 0)),
                          rows.select(np.flatnonzero(sides == 1)))

    def extend_sides(self, sides: np.ndarray, baseline: Rows, candidate: Rows) -> None:
        """:meth:`extend` with the rows already split by side (each in arrival order)."""
        base, cand = pair_up(self._queues, sides, (baseline, candidate))
        if len(base):
            self._bet(base, cand)

    def _refit(self) -> None:
        """The witness and payoff scale of the pairs so far, for the next refit_every pairs."""
        n = self._pairs
        self._fit_until = n + refit_every(n)
        if n == 0:
            return  # the first pair is only learnt from
        mean_a, mean_b = self._feature_sums[0] / n, self._feature_sums[1] / n
        pooled = (mean_a + mean_b) / 2
        self._w_features = _weights(mean_b - mean_a, pooled * (1 - pooled), n, FEATURE_FLOOR)
        d_a, d_b = self._desc_sums[0] / n, self._desc_sums[1] / n
        d_var = np.maximum(self._desc_squares / (2 * n) - ((d_a + d_b) / 2) ** 2, 0.0)
        self._w_descriptors = _weights(d_b - d_a, d_var, n, DESCRIPTOR_FLOOR)
        self._scale = self._scale_sum / n

    def _score(self, rows: Rows) -> np.ndarray:
        """``w · φ(x)`` of every row: the witness at the event's features and descriptors."""
        features = rows.row_sums(self._w_features[rows.features])
        # A row-wise sum, not a matrix product: each row's rounding is then the same whatever
        # rows share the call, so the test does not depend on how events were batched.
        scores: np.ndarray = features + (rows.descriptors * self._w_descriptors).sum(axis=1)
        return scores

    def _bet(self, a: Rows, b: Rows) -> None:
        """Bet on the pairs ``(a[i], b[i])`` in order, chunk by chunk of one witness each.

        Valid as a test martingale: within a chunk, the witness and the scale were fitted on
        the pairs before it, so each pair's payoff is odd in swapping its two events given the
        past, which is all the argument needs; the wealth after every pair (cumulative sums of
        ``log1p(λ s)``) is what a pair-by-pair bettor holds, so the peak misses no pair.
        """
        done = 0
        while done < len(a):
            if self._pairs >= self._fit_until:
                self._refit()
            stop = min(len(a), done + self._fit_until - self._pairs)
            ca, cb = a.slice(done, stop), b.slice(done, stop)
            if self._pairs > 0:
                raw = self._score(cb) - self._score(ca)
                if self._scale > 0:
                    steps = np.log1p(np.multiply.outer(np.tanh(raw / self._scale), LAMBDAS))
                    path = np.cumsum(np.vstack([self._log_wealth, steps]), axis=0)[1:]
                    self._log_wealth = path[-1].copy()
                    self._peak = max(self._peak, float(_log_mean_exp(path).max()))
                self._scale_sum = float(_running_sum(self._scale_sum, np.abs(raw)))
            # Only now do the pairs join the witness: each was bet on before being learnt from.
            self._learn(ca, cb)
            done = stop

    def _learn(self, a: Rows, b: Rows) -> None:
        self._feature_sums[0] += np.bincount(a.features, minlength=self.d_sae)
        self._feature_sums[1] += np.bincount(b.features, minlength=self.d_sae)
        k = self.n_descriptors  # sums of both sides and of the squares: one running sum
        start = np.concatenate([self._desc_sums[0], self._desc_sums[1], self._desc_squares])
        rows = np.concatenate([a.descriptors, b.descriptors,
                               a.descriptors**2 + b.descriptors**2], axis=1)
        total = _running_sum(start, rows)
        self._desc_sums = total[: 2 * k].reshape(2, k)
        self._desc_squares = total[2 * k:]
        self._pairs += len(a)

    # --- snapshot / restore / merge -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "d_sae": self.d_sae, "n_descriptors": self.n_descriptors,
            "queue_capacity": self.queue_capacity,
            "queues": [pack(q.rows(), self.n_descriptors) for q in self._queues],
            "feature_sums": self._feature_sums.copy(), "desc_sums": self._desc_sums.copy(),
            "desc_squares": self._desc_squares.copy(), "pairs": self._pairs,
            "scale_sum": self._scale_sum, "log_wealth": self._log_wealth.copy(),
            "peak": self._peak, "fit_until": self._fit_until,
            "w_features": self._w_features.copy(), "w_descriptors": self._w_descriptors.copy(),
            "scale": self._scale,
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> PairedBet:
        bet = cls(int(data["d_sae"]), int(data["n_descriptors"]), int(data["queue_capacity"]))
        for side, rows in enumerate(data["queues"]):
            bet._queues[side].extend(unpack_rows(rows))
        bet._feature_sums = np.array(data["feature_sums"], dtype=np.float64)
        bet._desc_sums = np.array(data["desc_sums"], dtype=np.float64)
        bet._desc_squares = np.array(data["desc_squares"], dtype=np.float64)
        bet._pairs = int(data["pairs"])
        bet._scale_sum = float(data["scale_sum"])
        bet._log_wealth = np.array(data["log_wealth"], dtype=np.float64)
        bet._peak = float(data["peak"])
        # Written before witnesses were kept: refit at the next pair (fitted on the past only).
        bet._fit_until = int(data.get("fit_until", bet._pairs))
        bet._w_features = np.array(data.get("w_features", ()), dtype=np.float64)
        bet._w_descriptors = np.array(data.get("w_descriptors", ()), dtype=np.float64)
        bet._scale = float(data.get("scale", 0.0))
        return bet

    def merge(self, other: Self) -> None:
        """Fold in the same test run by another replica on other events.

        Each wealth is a test martingale of its own events, independent of the other's under
        the null, so their **average** is one too; from here on it grows with the pairs of
        both replicas' later events. The witness' sums add (it is refitted at the next pair).
        The peaks are not combined: the running maximum of an average is not known from the
        two maxima, so the merged peak starts at the merged wealth (conservative: it can only
        delay an alarm).
        """
        self._log_wealth = np.logaddexp(self._log_wealth, other._log_wealth) - math.log(2)
        self._peak = max(0.0, self.log_evidence)
        self._feature_sums += other._feature_sums
        self._desc_sums += other._desc_sums
        self._desc_squares += other._desc_squares
        self._pairs += other._pairs
        self._scale_sum += other._scale_sum
        self._fit_until = self._pairs
        for mine, theirs in zip(self._queues, other._queues, strict=True):
            mine.extend(theirs.rows())
        k = min(len(self._queues[0]), len(self._queues[1]))
        if k:
            self._bet(self._queues[0].popleft(k), self._queues[1].popleft(k))


def _weights(delta: np.ndarray, variance: np.ndarray, n: int, floor: float) -> np.ndarray:
    """Witness weights: the mean difference over the pooled variance (plus ``floor``), shrunk
    towards 0 by its own noise: a difference within ``sqrt(SHRINK)`` standard errors of 0 gets
    no weight (James–Stein's positive part), so hundreds of features that differ by chance
    after a few pairs do not drown the few that really moved."""
    z2 = delta**2 * n / (2 * (variance + 1e-6))
    keep = np.maximum(0.0, 1.0 - SHRINK / np.maximum(z2, 1e-12))
    out: np.ndarray = delta / (variance + floor) * keep
    return out


def _running_sum(start: np.ndarray | float, rows: np.ndarray) -> Any:
    """``start`` plus the rows of ``rows`` added one at a time, in order: the same float
    whether the rows come in one call or in several (a plain ``sum`` rounds differently)."""
    return np.cumsum(np.concatenate([np.asarray(start, dtype=np.float64)[None], rows]),
                     axis=0)[-1]


def _log_mean_exp(values: np.ndarray) -> np.ndarray:
    """``log mean exp`` of each row of ``values [n, len(LAMBDAS)]``."""
    top = values.max(axis=1)
    out: np.ndarray = top + np.log(np.exp(values - top[:, None]).sum(axis=1) / values.shape[1])
    return out
