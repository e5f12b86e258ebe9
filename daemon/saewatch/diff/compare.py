"""``compare``: the diff of one comparison from two :class:`FeatureCounts` — a pure function.

Verdict rules, in order: fewer than ``min_documents`` on either side gives ``insufficient_data``
(with a message saying how many are missing); otherwise ``drift`` exactly when one of these
always-valid tests has rejected, else ``no_drift``:

* the **pooled betting test** of the two versions (``bet``, from the state:
  :mod:`saewatch.state.betting`), which weighs all features and descriptors together, at
  ``alpha * bet_alpha_share`` (``bet_alarm``);
* the per-feature tests (``sequential_alarm``) and, with ``descriptors_in_verdict``, the text
  descriptors' (``saewatch.diff.descriptors``), one Bonferroni family at the rest of ``alpha``.

The union bound keeps the false-alarm probability over the whole stream ≤ ``alpha``. A
comparison without a bet (a time window, a configured pair of older versions) gives the family
all of ``alpha``. The per-feature tests are the explanation; the bet is the verdict's power.
``drift_score`` stays a feature quantity, so a verdict driven by descriptors or the bet alone
can carry a score of 0. The fixed-time Benjamini–Hochberg q-values pick and rank the features
shown (``n_significant``, ``top_up``/``top_down``), ranked by practical effect: the absolute
change of the share of documents the feature is present in. The strongest of them, up to
``THEME_CANDIDATES`` per direction, are grouped into ``themes`` of co-firing features
(:mod:`saewatch.diff.themes`) from the co-occurrence the retrieval source counts. The same
candidates are tested again within strata of equal token length (:mod:`saewatch.diff.length`):
those whose change a change of length accounts for (``length_explained``) rank after the others
in ``top_up``/``top_down``, each group in effect order, before the ``top_k`` cut (themes keep
the effect order).

``drift_score`` is the summed absolute change in document frequency over the features whose
always-valid test has alarmed: the expected number of feature firings per document that changed,
counting only changes confirmed at family-wise level ``alpha`` over the whole stream. It is 0
whenever the verdict is not ``drift``, so A/A streams give 0 with probability at least
``1 - alpha`` at every moment (a BH-based score would jump to ~0.1 on the 5% of A/A looks where a
single false discovery slips through).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np

from saewatch.config import DiffSettings
from saewatch.diff.descriptors import DESCRIPTOR_TESTS, compare_descriptors
from saewatch.diff.divergence import js_divergence, null_divergence
from saewatch.diff.exceptions import CountsMismatchError
from saewatch.diff.length import NOT_ASSESSED, LengthTest, assess_length, rank_by_length
from saewatch.diff.sequential import sequential_alarms
from saewatch.diff.stats import FeatureTests, feature_tests
from saewatch.diff.themes import THEME_CANDIDATES, group_themes
from saewatch.models import (
    BetEvidence,
    ComparisonKey,
    ComparisonResult,
    DescriptorFinding,
    DescriptorStats,
    FeatureCounts,
    FeatureDelta,
    Snippet,
    Theme,
)
from saewatch.views import ExampleSource, RetrievalSource

logger = logging.getLogger(__name__)


def compare(
    key: ComparisonKey,
    baseline: FeatureCounts,
    candidate: FeatureCounts,
    settings: DiffSettings,
    labels: Mapping[int, str] | None = None,
    examples: ExampleSource | None = None,
    now: datetime | None = None,
    descriptors: tuple[DescriptorStats, DescriptorStats] | None = None,
    bet: BetEvidence | None = None,
    cooccurrence: RetrievalSource | None = None,
) -> ComparisonResult:
    """Compare ``candidate`` with ``baseline`` feature by feature, and descriptor by descriptor.

    ``examples`` (a :class:`~saewatch.views.StateView`, say) illustrates the top features with
    ``settings.examples_per_side`` snippets of each side. ``descriptors`` are the two sides'
    text-descriptor histograms; with ``settings.descriptors_in_verdict`` they join the features
    in one always-valid family (``saewatch.diff.descriptors`` argues the guarantee).
    ``cooccurrence`` (the view again) counts which significant features fire together, for
    ``themes``, and their presence by token length, for ``length_explained``; without it every
    feature is a theme of its own and none is assessed for length.

    Examples
    --------
    >>> import numpy as np
    >>> from saewatch.models import ComparisonKey, FeatureCounts
    >>> def counts(v, fired):
    ...     return FeatureCounts(model_id="m", model_version=v, field="response", n_documents=1000,
    ...                          fired=np.array(fired), activation_sum=np.zeros(3))
    >>> key = ComparisonKey(model_id="m", field="response", baseline="v1", candidate="v2")
    >>> r = compare(key, counts("v1", [100, 500, 3]), counts("v2", [300, 500, 2]), DiffSettings())
    >>> r.verdict, r.n_significant, [d.feature for d in r.top_up]
    ('drift', 1, [0])
    """
    now = now or datetime.now(UTC)
    n_a, n_b = baseline.n_documents, candidate.n_documents
    if baseline.d_sae != candidate.d_sae:
        raise CountsMismatchError(
            f"{key.slug}: baseline has d_sae={baseline.d_sae}, candidate {candidate.d_sae}"
        )
    if min(n_a, n_b) < settings.min_documents:
        return ComparisonResult(
            key=key, n_baseline=n_a, n_candidate=n_b, verdict="insufficient_data",
            computed_at=now,
            message=(f"{n_a} baseline and {n_b} candidate documents; at least "
                     f"{settings.min_documents} per side are needed before a verdict"),
        )
    a, b = baseline.fired, candidate.fired
    tests = feature_tests(a, n_a, b, n_b, settings.exact_below)
    shared = descriptors is not None and settings.descriptors_in_verdict
    family = len(a) + (DESCRIPTOR_TESTS if shared else 0)
    # alpha is split between the pooled bet (where it runs) and the per-feature family: a
    # union bound keeps the stream's false-alarm probability <= alpha.
    share = settings.bet_alpha_share if bet is not None else 0.0
    family_alpha = settings.alpha * (1 - share)
    bet_alarm = bet is not None and share > 0 and bet.alarmed(settings.alpha * share)
    alarms = sequential_alarms(a, n_a, b, n_b, family_alpha, settings.msprt_tau, family)
    found = _descriptor_findings(key, descriptors, settings, family if shared else None,
                                 family_alpha)
    moved = sum(f.moved for f in found)
    significant = tests.q_value < settings.q_level
    divergence = js_divergence(a, b)
    expected = null_divergence(a, n_a, b, n_b)
    # The top_k shown and the theme candidates are one ranking: compute the longer of them.
    wanted = max(settings.top_k, THEME_CANDIDATES)
    tops = {d: _top(d, tests, significant, wanted) for d in ("up", "down")}
    length = _length(key, [int(j) for d in tops for j in tops[d]], cooccurrence, settings)
    deltas = {d: tuple(_delta(int(j), d, tests, a, b, key, labels, examples, settings,
                              length.get(int(j), NOT_ASSESSED)) for j in tops[d]) for d in tops}
    themes, n_themes = _themes(key, deltas, cooccurrence, settings)
    shown = {d: rank_by_length(deltas[d])[:settings.top_k] for d in deltas}
    return ComparisonResult(
        key=key, n_baseline=n_a, n_candidate=n_b,
        verdict="drift" if bet_alarm or alarms.any() or (shared and moved) else "no_drift",
        message=(_bet_words(bet, bet_alarm) + f"{int(alarms.sum())} feature(s) alarmed"
                 + (f", {moved} text descriptor(s) moved" if descriptors is not None else "")
                 + (" (descriptors reported, not in the verdict)"
                    if descriptors is not None and not shared else "")
                 + f" (always-valid, alpha={settings.alpha}); JS divergence {divergence:.4f} vs "
                 f"{expected:.4f} expected for two samples of one source"),
        drift_score=float(np.abs(tests.freq_b - tests.freq_a)[alarms].sum()),
        divergence=divergence, n_significant=int(significant.sum()),
        sequential_alarm=bool(alarms.any()), bet=bet, bet_alarm=bet_alarm,
        top_up=tuple(shown["up"]), top_down=tuple(shown["down"]),
        descriptors=found, themes=themes, n_significant_themes=n_themes, computed_at=now,
    )


def _descriptor_findings(
    key: ComparisonKey, descriptors: tuple[DescriptorStats, DescriptorStats] | None,
    settings: DiffSettings, family: int | None, alpha: float,
) -> tuple[DescriptorFinding, ...]:
    if descriptors is None or min(d.n_documents for d in descriptors) == 0:
        return ()
    return compare_descriptors(descriptors[0], descriptors[1], key.field, alpha,
                               settings.msprt_tau, family or DESCRIPTOR_TESTS)


def _themes(
    key: ComparisonKey, deltas: Mapping[str, tuple[FeatureDelta, ...]],
    source: RetrievalSource | None, settings: DiffSettings,
) -> tuple[tuple[Theme, ...], int]:
    candidates = [*deltas["up"][:THEME_CANDIDATES], *deltas["down"][:THEME_CANDIDATES]]
    if not candidates:
        return (), 0
    base, cand = _versions(key)
    counts = (None if source is None else source.cooccurrence(
        [d.feature for d in candidates], key.model_id, [base, cand], key.field))
    # A window key's sides are one version: the ring cannot split them, so no any-member share.
    sides = None if key.kind == "window" else (base, cand)
    return group_themes(candidates, counts, sides, settings.top_k, settings.min_documents)


def _length(
    key: ComparisonKey, features: list[int], source: RetrievalSource | None,
    settings: DiffSettings,
) -> dict[int, LengthTest]:
    if key.kind == "window":  # one version on both sides: the ring cannot split them
        return {}
    return assess_length(source, key.model_id, key.field, _versions(key), features,
                         settings.q_level, settings.min_documents)


def _bet_words(bet: BetEvidence | None, alarmed: bool) -> str:
    if bet is None:
        return ""
    state = "rejected" if alarmed else "not rejected"
    return (f"pooled test {state} (log evidence {bet.peak_log_evidence:.1f} at peak, "
            f"{bet.pairs} pairs); ")


def _top(direction: str, tests: FeatureTests, significant: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` significant features of ``direction`` with the largest practical effect: the
    absolute change of the share of documents where the feature is present (a change from 0.0%
    to 2.7% ranks below one from 30% to 60%, whatever their odds ratios), ties by q-value."""
    sign = 1.0 if direction == "up" else -1.0
    chosen = np.flatnonzero(significant & (sign * tests.log_odds > 0))
    effect = sign * (tests.freq_b - tests.freq_a)
    order = np.lexsort((tests.q_value[chosen], -effect[chosen]))
    return chosen[order][:k]


def _delta(
    j: int, direction: str, tests: FeatureTests, a: np.ndarray, b: np.ndarray,
    key: ComparisonKey, labels: Mapping[int, str] | None, examples: ExampleSource | None,
    settings: DiffSettings, length: LengthTest = NOT_ASSESSED,
) -> FeatureDelta:
    base_version, cand_version = _versions(key)
    k = settings.examples_per_side
    return FeatureDelta(
        feature=j, label=(labels or {}).get(j),
        count_baseline=int(a[j]), count_candidate=int(b[j]),
        freq_baseline=float(tests.freq_a[j]), freq_candidate=float(tests.freq_b[j]),
        log_odds_ratio=float(tests.log_odds[j]), p_value=float(tests.p_value[j]),
        q_value=float(tests.q_value[j]), direction=direction,
        examples_baseline=_examples(examples, j, key, base_version, k),
        examples_candidate=_examples(examples, j, key, cand_version, k),
        length_explained=length.explained, stratified_p=length.stratified_p,
        stratified_odds_ratio=length.odds_ratio,
    )


def _examples(
    examples: ExampleSource | None, j: int, key: ComparisonKey, version: str, k: int
) -> tuple[Snippet, ...]:
    if examples is None or k == 0:
        return ()
    return tuple(examples.examples(j, key.model_id, version, key.field, k))


def _versions(key: ComparisonKey) -> tuple[str, str]:
    """Model versions behind a key (a window key's sides are ``version`` / ``version@window``)."""
    if key.kind == "window":
        version = key.baseline
        return version, version
    return key.baseline, key.candidate
