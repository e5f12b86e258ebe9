"""``compare``: the diff of one comparison from two :class:`FeatureCounts` — a pure function.

Verdict rules, in order: fewer than ``min_documents`` on either side gives ``insufficient_data``
(with a message saying how many are missing); otherwise ``drift`` exactly when the always-valid
sequential test has alarmed (``sequential_alarm``; false-alarm rate ≤ ``alpha`` over the whole
stream), else ``no_drift``. The fixed-time Benjamini–Hochberg q-values pick and rank the features
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
from saewatch.diff.divergence import js_divergence, null_divergence
from saewatch.diff.exceptions import CountsMismatchError
from saewatch.diff.sequential import sequential_alarms
from saewatch.diff.stats import FeatureTests, feature_tests
from saewatch.models import (
    ComparisonKey,
    ComparisonResult,
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
) -> ComparisonResult:
    """Compare ``candidate`` with ``baseline`` feature by feature.

    ``examples`` (a :class:`~saewatch.views.StateView`, say) illustrates the top features with
    ``settings.examples_per_side`` snippets of each side.

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
    alarms = sequential_alarms(a, n_a, b, n_b, settings.alpha, settings.msprt_tau)
    significant = tests.q_value < settings.q_level
    divergence = js_divergence(a, b)
    expected = null_divergence(a, n_a, b, n_b)
    tops = {d: _top(d, tests, significant, settings.top_k) for d in ("up", "down")}
    deltas = {d: tuple(_delta(int(j), d, tests, a, b, key, labels, examples, settings)
                       for j in tops[d]) for d in tops}
    return ComparisonResult(
        key=key, n_baseline=n_a, n_candidate=n_b,
        verdict="drift" if alarms.any() else "no_drift",
        message=(f"{int(alarms.sum())} feature(s) alarmed (always-valid, alpha="
                 f"{settings.alpha}); JS divergence {divergence:.4f} vs {expected:.4f} expected "
                 "for two samples of one source"),
        drift_score=float(np.abs(tests.freq_b - tests.freq_a)[alarms].sum()),
        divergence=divergence, n_significant=int(significant.sum()),
        sequential_alarm=bool(alarms.any()),
        top_up=deltas["up"], top_down=deltas["down"], computed_at=now,
    )


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
