"""Length-aware feature diffs: which significant changes a change of answer length accounts for.

A feature has one chance to fire per token, so when the candidate's answers are shorter (a
"concise" version) many features lose documents for that reason alone, and they crowd out the
changes a reader is looking for. For each significant feature the two sides are therefore
compared again *within* strata of equal token length, among the events of the retrieval ring
(the only place that keeps per-document presence and length; ``RetrievalSource.length_strata``),
with the Cochran–Mantel–Haenszel test (Mantel & Haenszel 1959, *J. Natl. Cancer Inst.* 22:719):
per stratum ``s`` the 2×2 table of side × presence, with ``a_s`` the candidate's documents with
the feature,

* chi-square ``(|Σ (a_s - E a_s)| - 1/2)² / Σ Var a_s`` with 1 degree of freedom, the
  hypergeometric mean and variance of ``a_s`` given the table's margins (``- 1/2``: Mantel and
  Haenszel's continuity correction);
* the common odds ratio ``Σ (a_s d_s / n_s) / Σ (b_s c_s / n_s)``, candidate vs baseline (> 1:
  more frequent in the candidate at equal length).

**Strata.** The deciles of the pooled token counts of both sides in the ring (:data:`STRATA`).
Cochran (1968, *Biometrics* 24:295) found five subclasses remove about 90% of a confounder's
bias, but the rest is a real effect a large ring detects: simulated, a feature whose presence
depends on length alone (``0.05 + 0.8 exp(-t/60)``, sides of 40-256 and 10-149 tokens) keeps
a common odds ratio of ~1.13 in quintiles and is "explained" in 0 of 40 runs at 20,000
documents per side; in deciles ~1.01 and 37 of 40 (92% at 2,000 per side and fewer: 40 of 40).
Tied counts (answers cut at ``encode.max_tokens_per_text`` all read the same number of tokens)
make fewer strata, and such a stratum holds exactly the answers read in full budget. A stratum
with fewer than :data:`MIN_PER_SIDE` documents of a side carries no comparison and is dropped
(lengths only one side has cannot be compared at equal length).

**Rule.** A feature is *explained by length* when the ring's documents of known length show its
change (the same CMH statistic on them as one stratum: ``p < q_level``) and no longer do once
length is held fixed: stratified ``p >= q_level``. Conditioning on the ring seeing the change
at all keeps a small ring, or one that holds only part of the counts, from calling every change
"length": there the question is not assessed (``None``), as for a window comparison (one
version: the ring cannot split it), a source without a ring, or a side with fewer than
``min_documents`` ring documents of known length. A p-value rule rather than "odds ratio within
a band of 1": it asks the question a reader has (is any change left at equal length?) at the
comparison's own level, while a band ignores sample size (on a small ring its verdict is the
odds ratio's noise) and adds a width to defend. Its weakness is the reverse one: on a very large
ring residual confounding within a stratum becomes significant, which deciles keep small
(above). "Explained" therefore means "not distinguishable from a length effect"; that includes
sides whose lengths hardly overlap, where no data could tell the two apart. The stratified
p-value and odds ratio are reported either way.

Presence in the ring is among an event's ``retrieval_max_features`` strongest features
(``LengthStrata.saturated`` counts the events at that cap): a present feature weaker than an
event's 64 strongest is missed there, most often in long answers. With the shipped presence
thresholds, claude-2.1 → claude-2.1_concise (402/403 responses) reached the default cap of 64 in
7% / 3% of responses at 128 tokens and 43% / 12% at the daemon's 256; there, against a ring
that indexes every present feature, 31 of the 36 strongest candidates get the same verdict,
2 are called explained that are not, and 3 are not assessed. Raise ``retrieval_max_features``
where ``saturated`` is a large share.
Cost: two ring queries (the first, without features, only histograms the token counts to place
the edges) and a few array operations: ~5-10 ms for 60 features over a ring of 5,000 events,
~75-100 ms over a full one of 100,000 (2 busy cores; linear in the ring like the co-occurrence
query of themes, which costs about the same).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from saewatch.models import FeatureDelta, LengthStrata, TextField
from saewatch.views import RetrievalSource

logger = logging.getLogger(__name__)

STRATA = 10  # quantile strata of the pooled token counts (deciles; see the module docstring)
MIN_PER_SIDE = 2  # documents of each side a stratum needs to be kept
# Token counts are resolved one by one up to this when the strata edges are chosen (the
# encoder's budget, encode.max_tokens_per_text, is 256 by default); longer ones pool above it.
PROBE_MAX = 8_192
PROBE_EDGES = tuple(range(1, PROBE_MAX + 1))


@dataclass(frozen=True)
class LengthTest:
    """One feature's length-stratified test: ``explained`` is ``None`` when not assessed.

    >>> LengthTest(explained=True, stratified_p=0.4, odds_ratio=1.1).explained
    True
    """

    explained: bool | None
    stratified_p: float | None = None
    odds_ratio: float | None = None


NOT_ASSESSED = LengthTest(explained=None)


def choose_edges(documents: np.ndarray, n_strata: int = STRATA) -> tuple[int, ...]:
    """Stratum edges at the ``n_strata`` quantiles of token counts histogrammed one count per
    bucket (``documents[..., t]``: documents of ``t`` tokens, summed over leading axes).

    A quantile that falls on a tie puts the whole tie above the edge; repeated edges collapse.

    >>> hist = np.bincount([20] * 10 + [40] * 10 + [128] * 30, minlength=129)
    >>> choose_edges(hist, 4)
    (40, 128)
    """
    pooled = np.asarray(documents, dtype=np.int64).reshape(-1, np.shape(documents)[-1]).sum(0)
    total = int(pooled.sum())
    if total == 0:
        return ()
    cum = np.cumsum(pooled)
    # First token count at which the cumulative share reaches q: counts below it are < q.
    cuts = np.searchsorted(cum, total * np.arange(1, n_strata) / n_strata, side="left")
    return tuple(int(c) for c in np.unique(cuts) if c > 0)


def mantel_haenszel(
    present_a: np.ndarray, n_a: np.ndarray, present_b: np.ndarray, n_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CMH chi-square (continuity-corrected), its p-value and the Mantel–Haenszel common odds
    ratio of ``b`` (candidate) vs ``a`` (baseline), per row; arrays ``[features, strata]``
    (``n_a``/``n_b`` may be ``[strata]``). The odds ratio is NaN where it is undefined.

    Vectorised over features (``statsmodels``' ``StratifiedTable`` takes one feature per object:
    ~8 ms for 60 features, and it lets the corrected deviation go below 0); the values agree
    with it (``tests/diff/test_length.py``).

    >>> chi2, p, odds = mantel_haenszel(np.array([[10, 5]]), np.array([50, 50]),
    ...                                 np.array([[30, 15]]), np.array([50, 50]))
    >>> round(float(chi2[0]), 2), float(p[0]) < 1e-4, round(float(odds[0]), 2)
    (20.81, True, 5.0)
    """
    a = np.asarray(present_b, dtype=np.float64)  # candidate with the feature
    c = np.asarray(present_a, dtype=np.float64)  # baseline with it
    rows_b = np.broadcast_to(np.asarray(n_b, dtype=np.float64), a.shape)
    rows_a = np.broadcast_to(np.asarray(n_a, dtype=np.float64), c.shape)
    b, d = rows_b - a, rows_a - c
    n = rows_a + rows_b
    with np.errstate(divide="ignore", invalid="ignore"):
        col = a + c
        expected = np.where(n > 0, rows_b * col / n, 0.0)
        var = np.where(n > 1, rows_b * rows_a * col * (n - col) / (n**2 * (n - 1)), 0.0)
        deviation = np.maximum(np.abs((a - expected).sum(axis=-1)) - 0.5, 0.0)
        total_var = var.sum(axis=-1)
        chi2 = np.where(total_var > 0, deviation**2 / total_var, 0.0)
        odds = (np.where(n > 0, a * d / n, 0.0).sum(axis=-1)
                / np.where(n > 0, b * c / n, 0.0).sum(axis=-1))
    odds = np.where(np.isfinite(odds), odds, np.nan)
    return chi2, stats.chi2.sf(chi2, 1), odds


def length_tests(
    strata: LengthStrata, sides: tuple[str, str], q_level: float, min_documents: int = 1,
) -> dict[int, LengthTest]:
    """The test of every feature of ``strata`` between ``sides`` (baseline, candidate).

    >>> s = LengthStrata(model_id="m", field="response", versions=("v1", "v2"), features=(1, 2),
    ...     edges=(50,), n_documents=np.array([[20, 80], [80, 20]]),
    ...     present=np.array([[[2, 2], [40, 8]], [[8, 48], [10, 12]]]),
    ...     saturated=np.zeros((2, 2), np.int64), unknown=np.zeros(2, np.int64))
    >>> t = length_tests(s, ("v1", "v2"), 0.05)
    >>> t[1].explained, t[2].explained, round(t[2].odds_ratio, 1)
    (True, False, 13.5)
    """
    if any(v not in strata.versions for v in sides) or sides[0] == sides[1]:
        return {f: NOT_ASSESSED for f in strata.features}
    ia, ib = (strata.versions.index(v) for v in sides)
    n_a, n_b = strata.n_documents[ia], strata.n_documents[ib]
    if min(int(n_a.sum()), int(n_b.sum())) < max(min_documents, 1):
        return {f: NOT_ASSESSED for f in strata.features}
    kept = (n_a >= MIN_PER_SIDE) & (n_b >= MIN_PER_SIDE)
    if not kept.any():
        return {f: NOT_ASSESSED for f in strata.features}
    fa = strata.present[ia][kept].T  # [features, strata]
    fb = strata.present[ib][kept].T
    _, p_strat, odds = mantel_haenszel(fa, n_a[kept], fb, n_b[kept])
    # Whether the ring sees the change at all: every document of known length, one stratum.
    _, p_pooled, _ = mantel_haenszel(strata.present[ia].sum(0)[:, None], n_a.sum(keepdims=True),
                                     strata.present[ib].sum(0)[:, None], n_b.sum(keepdims=True))
    out = {}
    for i, f in enumerate(strata.features):
        seen = bool(p_pooled[i] < q_level)
        out[f] = LengthTest(explained=bool(p_strat[i] >= q_level) if seen else None,
                            stratified_p=float(p_strat[i]),
                            odds_ratio=float(odds[i]) if np.isfinite(odds[i]) else None)
    return out


def assess_length(
    source: RetrievalSource | None, model_id: str, field: TextField, sides: tuple[str, str],
    features: Sequence[int], q_level: float, min_documents: int = 1,
) -> dict[int, LengthTest]:
    """:func:`length_tests` of ``features`` on ``source``'s ring, strata chosen from the pooled
    token counts of both sides there (:func:`choose_edges`); every feature not assessed when
    there is no source or the sides are one version.
    """
    wanted = list(dict.fromkeys(int(f) for f in features))
    if source is None or not wanted or sides[0] == sides[1]:
        return {f: NOT_ASSESSED for f in wanted}
    probe = source.length_strata([], model_id, sides, PROBE_EDGES, field)
    edges = choose_edges(probe.n_documents)
    return length_tests(source.length_strata(wanted, model_id, sides, edges, field), sides,
                        q_level, min_documents)


def rank_by_length(deltas: Sequence[FeatureDelta]) -> list[FeatureDelta]:
    """``deltas`` (already in effect order) with the length-explained ones moved after the
    others, each group keeping its order; not assessed counts as not explained.

    >>> def delta(f, explained):
    ...     return FeatureDelta(feature=f, count_baseline=0, count_candidate=0, freq_baseline=0,
    ...                         freq_candidate=1, log_odds_ratio=1, p_value=0, q_value=0,
    ...                         direction="up", length_explained=explained)
    >>> [d.feature for d in rank_by_length([delta(1, True), delta(2, None), delta(3, False)])]
    [2, 3, 1]
    """
    return sorted(deltas, key=lambda d: d.length_explained is True)
