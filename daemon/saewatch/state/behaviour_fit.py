"""Fit a behaviour from a few example texts: specific features, a small scorer, a threshold.

1. **Features.** A feature is *specific* when it is present in at least
   :data:`MIN_EXAMPLE_SHARE` of the examples and at least :data:`MIN_ENRICHMENT` times more
   often in them than in the background (recent events of the state, or the demo sample), and in
   fewer than half of the counter-examples. The :data:`MAX_BEHAVIOUR_FEATURES` most enriched are
   kept. None: the examples share nothing the SAE tells apart from ordinary traffic, and the
   fit stops with :class:`NoSpecificFeatureError` (nothing is stored).
2. **Descriptors.** A text descriptor (length, lists, code blocks, tables, script, …) joins
   the scorer when the examples stand out on it: in spreads of the background (``z``, on
   log counts), their median is at least :data:`MIN_DESCRIPTOR_Z` away from the background's
   median, and :data:`MIN_EXAMPLE_SHARE` of them lie at least one spread away on that side.
   The :data:`MAX_BEHAVIOUR_DESCRIPTORS` that stand out most join the scorer only where the
   features alone leave examples unflagged or background events flagged, and only if that
   fits better (every extra term also widens what a handful of examples matches).
3. **Scorer.** An L2-regularised logistic regression over the presence of those features and
   the descriptors' ``z``,
   examples against background and counter-examples (classes weighted equally, counter-examples
   :data:`COUNTER_WEIGHT` times a background event), by Newton steps (a few features: exact).
4. **Threshold.** Midway between the score the examples reach at :data:`TARGET_RECALL` and the
   background's ``1 - TARGET_BACKGROUND_RATE`` quantile; where those overlap (the examples are
   not separable), at the quantile, so that precision is kept and the recall reported.

Pure numpy over :class:`~saewatch.models.SparseCodes`: the caller encodes the texts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from saewatch.models import DESCRIPTOR_NAMES, SparseCodes, TextField
from saewatch.models.behaviours import (
    MAX_BEHAVIOUR_FEATURES,
    Z_CLIP,
    BehaviourDefinition,
    descriptor_transform,
)
from saewatch.state.exceptions import StateError

logger = logging.getLogger(__name__)

MIN_EXAMPLE_SHARE = 0.6  # 3 of 5 examples: a feature of one example is about its topic
MIN_ENRICHMENT = 8.0  # times more frequent in the examples than in the background
MIN_BACKGROUND = 50  # background documents below which a fit is not trusted
COUNTER_WEIGHT = 20.0  # a counter-example is a hand-picked negative: it weighs more
L2 = 0.5  # ridge on the weights (few positives: keeps them finite when separable)
TARGET_RECALL = 0.8  # the examples' score quantile the threshold stays under
TARGET_BACKGROUND_RATE = 0.003  # background share allowed above the threshold
NEWTON_STEPS = 50
MIN_DESCRIPTOR_Z = 2.0  # examples' median this many background spreads from the background's
MAX_BEHAVIOUR_DESCRIPTORS = 3
MIN_SPREAD = 0.05  # floor of a descriptor's background spread (a constant one stands out on 0)


class DescriptorTerms:
    """The descriptors a behaviour's examples stand out on, and how to standardise them.

    >>> bg = np.zeros((100, len(DESCRIPTOR_NAMES))); bg[:, 7] = 0  # tables: none
    >>> bg[:, 0] = np.random.default_rng(0).integers(50, 400, 100)  # words
    >>> ex = bg[:5].copy(); ex[:, 7] = 1  # each example has a table
    >>> terms = DescriptorTerms.select(ex, bg, None)
    >>> terms.names
    ('tables',)
    """

    def __init__(self, cols: np.ndarray, center: np.ndarray, scale: np.ndarray) -> None:
        self.cols, self.center, self.scale = cols, center, scale

    @classmethod
    def none(cls) -> DescriptorTerms:
        """No descriptor terms."""
        return cls(np.zeros(0, np.int64), np.zeros(0), np.ones(0))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(DESCRIPTOR_NAMES[int(c)] for c in self.cols)

    @classmethod
    def select(cls, examples: np.ndarray | None, background: np.ndarray | None,
               counters: np.ndarray | None) -> DescriptorTerms:
        none = cls.none()
        if examples is None or background is None:
            return none
        bg = descriptor_transform(background)
        bg = bg[~np.isnan(bg).any(axis=1)]  # rows restored from older snapshots: unknown
        if len(bg) < MIN_BACKGROUND or not len(examples):
            return none
        center = np.median(bg, axis=0)
        scale = np.maximum(bg.std(axis=0), MIN_SPREAD)
        z = (descriptor_transform(examples) - center) / scale
        mid = np.median(z, axis=0)
        side = np.sign(mid)
        beyond = np.mean((z * side) >= 1.0, axis=0)
        keep = (np.abs(mid) >= MIN_DESCRIPTOR_Z) & (beyond >= MIN_EXAMPLE_SHARE)
        if counters is not None and len(counters):
            zc = (descriptor_transform(counters) - center) / scale
            keep &= np.mean((zc * side) >= 1.0, axis=0) < 0.5  # counters share it: not it
        cols = np.flatnonzero(keep)
        cols = cols[np.argsort(-np.abs(mid[cols]), kind="stable")][:MAX_BEHAVIOUR_DESCRIPTORS]
        return cls(cols, center[cols], scale[cols])

    def z(self, values: np.ndarray | None, n: int) -> np.ndarray:
        """Standardised, clipped values ``[n, len(cols)]`` (0 where unknown)."""
        if values is None or not len(self.cols):
            return np.zeros((n, len(self.cols)))
        z = (descriptor_transform(values)[:, self.cols] - self.center) / self.scale
        clipped: np.ndarray = np.clip(np.nan_to_num(z, nan=0.0), -Z_CLIP, Z_CLIP)
        return clipped


class BehaviourFitError(StateError, ValueError):
    """A behaviour cannot be fitted from these texts; the message says what to change."""


class NoSpecificFeatureError(BehaviourFitError):
    """No SAE feature fires on the examples and rarely elsewhere: give examples that share the
    behaviour and differ otherwise (5-20 texts), or counter-examples of what it is not."""


def presence(codes: SparseCodes, d_sae: int) -> np.ndarray:
    """Documents of ``codes`` in which each feature is present (int64[d_sae])."""
    return np.bincount(codes.indices.astype(np.int64), minlength=d_sae)[:d_sae]


def select_features(
    examples: SparseCodes, background: SparseCodes, counters: SparseCodes, d_sae: int
) -> tuple[np.ndarray, np.ndarray]:
    """Specific features, most enriched first, and their enrichment (examples / background).

    >>> ex = SparseCodes.from_rows([[1, 2], [1, 3], [1]], [[1.0] * 2, [1.0] * 2, [1.0]])
    >>> bg = SparseCodes.from_rows([[2], [3], [0], [0]] * 25, [[1.0]] * 100)
    >>> feats, enrich = select_features(ex, bg, SparseCodes.from_rows([], []), 4)
    >>> feats.tolist(), round(float(enrich[0]), 1)
    ([1], 202.0)
    """
    n_e, n_b = max(len(examples), 1), len(background)
    p_e = presence(examples, d_sae) / n_e
    p_b = (presence(background, d_sae) + 0.5) / (n_b + 1)  # never 0: smoothed
    enrichment = p_e / p_b
    keep = (p_e >= MIN_EXAMPLE_SHARE) & (enrichment >= MIN_ENRICHMENT)
    if len(counters):
        keep &= presence(counters, d_sae) / len(counters) < 0.5
    chosen = np.flatnonzero(keep)
    chosen = chosen[np.argsort(-enrichment[chosen], kind="stable")][:MAX_BEHAVIOUR_FEATURES]
    return chosen, enrichment[chosen]


def design(codes: SparseCodes, features: np.ndarray) -> np.ndarray:
    """Dense ``[documents, len(features)]`` presence matrix of the chosen features."""
    x = np.zeros((len(codes), len(features)), dtype=np.float64)
    if len(features) == 0 or len(codes.indices) == 0:
        return x
    order = np.argsort(features)
    pos = np.minimum(np.searchsorted(features[order], codes.indices), len(features) - 1)
    hit = features[order][pos] == codes.indices
    rows = np.repeat(np.arange(len(codes)), np.diff(codes.indptr))
    x[rows[hit], order[pos[hit]]] = 1.0
    return x


def logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = L2) -> np.ndarray:
    """Weighted L2 logistic regression by Newton's method; returns ``[bias, weights...]``.

    >>> x = np.array([[1.0], [1.0], [0.0], [0.0]])
    >>> beta = logistic(x, np.array([1.0, 1.0, 0.0, 0.0]), np.ones(4))
    >>> bool(beta[1] > 1.0 and beta[0] < 0)
    True
    """
    a = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(a.shape[1])
    ridge = np.full(a.shape[1], l2)
    ridge[0] = 1e-6  # the bias is not shrunk
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ beta, -30, 30)))
        grad = a.T @ (w * (p - y)) + ridge * beta
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + np.diag(ridge)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return beta


def fit_behaviour(
    name: str,
    examples: Sequence[str],
    example_codes: SparseCodes,
    background: SparseCodes,
    d_sae: int,
    encoder_id: str,
    field: TextField = "response",
    counter_examples: Sequence[str] = (),
    counter_codes: SparseCodes | None = None,
    background_source: str = "",
    example_descriptors: np.ndarray | None = None,
    background_descriptors: np.ndarray | None = None,
    counter_descriptors: np.ndarray | None = None,
) -> BehaviourDefinition:
    """The :class:`BehaviourDefinition` of ``name`` from encoded examples and background.

    >>> rng = np.random.default_rng(0)
    >>> bg = SparseCodes.from_rows([rng.choice(8, 3, replace=False).tolist() for _ in range(300)],
    ...                            [[1.0] * 3] * 300)
    >>> ex = SparseCodes.from_rows([[8, 9, 1], [8, 9, 2], [8, 9, 3], [8, 4], [9, 5]],
    ...                            [[1.0] * 3] * 3 + [[1.0] * 2] * 2)
    >>> d = fit_behaviour("b", ["t"] * 5, ex, bg, d_sae=10, encoder_id="e")
    >>> sorted(d.features), d.flags(ex).tolist(), int(d.flags(bg).sum())
    ([8, 9], [True, True, True, True, True], 0)
    """
    counters = counter_codes if counter_codes is not None else SparseCodes.from_rows([], [])
    if len(example_codes) == 0:
        raise BehaviourFitError(f"behaviour {name!r}: no examples; give 5-20 example texts")
    if len(background) < MIN_BACKGROUND:
        raise BehaviourFitError(
            f"behaviour {name!r}: only {len(background)} background events (at least "
            f"{MIN_BACKGROUND}); let the daemon see more traffic, or start from an empty state "
            "to fit against the demo sample")
    features, enrichment = select_features(example_codes, background, counters, d_sae)
    if len(features) == 0:
        raise NoSpecificFeatureError(
            f"behaviour {name!r}: no SAE feature is present in {MIN_EXAMPLE_SHARE:.0%} of the "
            f"{len(example_codes)} examples and {MIN_ENRICHMENT:g}x rarer elsewhere; give "
            "examples that share the behaviour but differ otherwise")
    inputs = ((example_codes, example_descriptors), (background, background_descriptors),
              (counters, counter_descriptors))
    terms = DescriptorTerms.select(example_descriptors, background_descriptors,
                                   counter_descriptors)
    fit = _Fit.of(features, DescriptorTerms.none(), inputs)
    # Descriptors only where the features leave examples unflagged or background flagged: with
    # a handful of examples every extra term also widens what the behaviour matches (a table
    # feature names the examples' tables; the tables descriptor, every table).
    if len(terms.cols) and (fit.recall < 1.0 or fit.background_rate > 0.0):
        described = _Fit.of(features, terms, inputs)
        if (described.recall, -described.background_rate) > (fit.recall, -fit.background_rate):
            fit = described
    logger.info("behaviour %s: %d features (top enrichment %.0fx), descriptors %s, "
                "threshold %.3f", name, len(features), float(enrichment[0]),
                ", ".join(fit.terms.names) or "none", fit.threshold)
    n_f, beta = len(features), fit.beta
    return BehaviourDefinition(
        name=name, field=field, examples=tuple(examples), counter_examples=tuple(counter_examples),
        features=tuple(int(f) for f in features),
        weights=tuple(float(b) for b in beta[1:1 + n_f]), descriptors=fit.terms.names,
        descriptor_weights=tuple(float(b) for b in beta[1 + n_f:]),
        descriptor_center=tuple(float(c) for c in fit.terms.center),
        descriptor_scale=tuple(float(c) for c in fit.terms.scale), bias=float(beta[0]),
        threshold=fit.threshold, encoder_id=encoder_id, example_recall=fit.recall,
        background_rate=fit.background_rate, background_documents=len(background),
        background_source=background_source, created_at=datetime.now(UTC))


_Inputs = tuple[tuple[SparseCodes, np.ndarray | None], ...]  # examples, background, counters


class _Fit:
    """One logistic fit over the features (and descriptor terms) and its threshold."""

    def __init__(self, terms: DescriptorTerms, beta: np.ndarray, threshold: float,
                 recall: float, background_rate: float) -> None:
        self.terms, self.beta, self.threshold = terms, beta, threshold
        self.recall, self.background_rate = recall, background_rate

    @classmethod
    def of(cls, features: np.ndarray, terms: DescriptorTerms, inputs: _Inputs) -> _Fit:
        x_e, x_b, x_c = (np.hstack([design(c, features), terms.z(v, len(c))])
                         for c, v in inputs)
        x = np.vstack([x_e, x_b, x_c])
        y = np.concatenate([np.ones(len(x_e)), np.zeros(len(x_b) + len(x_c))])
        negatives = len(x_b) + COUNTER_WEIGHT * len(x_c)
        w = np.concatenate([np.full(len(x_e), 1.0 / len(x_e)),
                            np.full(len(x_b), 1.0 / negatives),
                            np.full(len(x_c), COUNTER_WEIGHT / negatives)]) * len(x) / 2
        beta = logistic(x, y, w)
        s_e, s_b = x_e @ beta[1:] + beta[0], x_b @ beta[1:] + beta[0]
        threshold = _threshold(s_e, s_b, x_c @ beta[1:] + beta[0])
        return cls(terms, beta, threshold, float(np.mean(s_e >= threshold)),
                   float(np.mean(s_b >= threshold)))


def _threshold(s_e: np.ndarray, s_b: np.ndarray, s_c: np.ndarray) -> float:
    high = float(np.quantile(s_e, 1 - TARGET_RECALL, method="lower"))
    low = float(np.quantile(s_b, 1 - TARGET_BACKGROUND_RATE, method="higher"))
    if len(s_c):
        low = max(low, float(s_c.max()))  # no counter-example is flagged
    if high > low:
        return (high + low) / 2
    return math.nextafter(low, math.inf)  # not separable: keep precision, report the recall
