"""``compare``: the diff of one comparison from two :class:`FeatureCounts` — a pure function.

Verdict rules, in order: fewer than ``min_documents`` on either side gives ``insufficient_data``
(with a message saying how many are missing); otherwise ``drift`` exactly when the always-valid
sequential test has alarmed (``sequential_alarm``, the features; false-alarm rate ≤ ``alpha``
over the whole stream) or, with ``descriptors_in_verdict``, a text descriptor moved (the same
family and level: ``saewatch.diff.descriptors``), else ``no_drift``. ``drift_score`` stays a
feature quantity, so a verdict driven by descriptors alone can carry a score of 0. The fixed-time Benjamini–Hochberg q-values pick and rank the features
shown (``n_significant``, ``top_up``/``top_down``, ranked by the smoothed log-odds ratio).

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
from saewatch.diff.sequential import sequential_alarms
from saewatch.diff.stats import FeatureTests, feature_tests
from saewatch.models import (
    ComparisonKey,
    ComparisonResult,
    DescriptorFinding,
    DescriptorStats,
    FeatureCounts,
    FeatureDelta,
    Snippet,
)
from saewatch.views import ExampleSource

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
) -> ComparisonResult:
    """Compare ``candidate`` with ``baseline`` feature by feature, and descriptor by descriptor.

    ``examples`` (a :class:`~saewatch.views.StateView`, say) illustrates the top features with
    ``settings.examples_per_side`` snippets of each side. ``descriptors`` are the two sides'
    text-descriptor histograms; with ``settings.descriptors_in_verdict`` they join the features
    in one always-valid family (``saewatch.diff.descriptors`` argues the guarantee).

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
    alarms = sequential_alarms(a, n_a, b, n_b, settings.alpha, settings.msprt_tau, family)
    found = _descriptor_findings(key, descriptors, settings, family if shared else None)
    moved = sum(f.moved for f in found)
    significant = tests.q_value < settings.q_level
    divergence = js_divergence(a, b)
    expected = null_divergence(a, n_a, b, n_b)
    tops = {d: _top(d, tests, significant, settings.top_k) for d in ("up", "down")}
    deltas = {d: tuple(_delta(int(j), d, tests, a, b, key, labels, examples, settings)
                       for j in tops[d]) for d in tops}
    return ComparisonResult(
        key=key, n_baseline=n_a, n_candidate=n_b,
        verdict="drift" if alarms.any() or (shared and moved) else "no_drift",
        message=(f"{int(alarms.sum())} feature(s) alarmed"
                 + (f", {moved} text descriptor(s) moved" if descriptors is not None else "")
                 + (" (descriptors reported, not in the verdict)"
                    if descriptors is not None and not shared else "")
                 + f" (always-valid, alpha={settings.alpha}); JS divergence {divergence:.4f} vs "
                 f"{expected:.4f} expected for two samples of one source"),
        drift_score=float(np.abs(tests.freq_b - tests.freq_a)[alarms].sum()),
        divergence=divergence, n_significant=int(significant.sum()),
        sequential_alarm=bool(alarms.any()),
        top_up=deltas["up"], top_down=deltas["down"], descriptors=found, computed_at=now,
    )


def _descriptor_findings(
    key: ComparisonKey, descriptors: tuple[DescriptorStats, DescriptorStats] | None,
    settings: DiffSettings, family: int | None,
) -> tuple[DescriptorFinding, ...]:
    if descriptors is None or min(d.n_documents for d in descriptors) == 0:
        return ()
    return compare_descriptors(descriptors[0], descriptors[1], key.field, settings.alpha,
                               settings.msprt_tau, family or DESCRIPTOR_TESTS)


def _top(direction: str, tests: FeatureTests, significant: np.ndarray, k: int) -> np.ndarray:
    sign = 1.0 if direction == "up" else -1.0
    chosen = np.flatnonzero(significant & (sign * tests.log_odds > 0))
    order = np.lexsort((tests.q_value[chosen], -sign * tests.log_odds[chosen]))
    return chosen[order][:k]


def _delta(
    j: int, direction: str, tests: FeatureTests, a: np.ndarray, b: np.ndarray,
    key: ComparisonKey, labels: Mapping[int, str] | None, examples: ExampleSource | None,
    settings: DiffSettings,
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
