"""Build the immutable :class:`DriftReport` that export serves: plan, resolve counts, compare.

A pure function of a frozen :class:`~saewatch.views.StateView`: the report's time is the view's,
counts and examples come from it, and nothing else is read, so one view always gives one report
(the app takes the view on the consumer thread and may diff it wherever it likes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from saewatch.config import DiffSettings
from saewatch.diff.behaviours import behaviour_summaries
from saewatch.diff.compare import compare
from saewatch.diff.descriptors import summaries
from saewatch.diff.plan import plan_comparisons, resolve_counts, resolve_descriptors
from saewatch.errors import SaewatchError
from saewatch.models import ComparisonResult, DriftReport
from saewatch.views import StateView

logger = logging.getLogger(__name__)


def build_report(
    view: StateView, settings: DiffSettings, labels: Mapping[int, str] | None = None
) -> DriftReport:
    """Compute every planned comparison of ``view``.

    A comparison whose counts are missing (a configured version that has not been seen yet) is
    reported as ``insufficient_data`` with the reason instead of failing the whole report.
    ``labels`` name features in the deltas and in the clusters' top features.

    Examples
    --------
    >>> import numpy as np
    >>> from datetime import UTC, datetime
    >>> from saewatch.models import FeatureCounts, VersionCount
    >>> rng = np.random.default_rng(0)
    >>> fired = {"v1": rng.binomial(150, [0.9, 0.05]), "v2": rng.binomial(150, [0.05, 0.9])}
    >>> view = StateView(
    ...     taken_at=datetime(2026, 11, 20, tzinfo=UTC),
    ...     versions=[VersionCount(model_id="m", model_version=v, field="response",
    ...                            documents=150) for v in fired],
    ...     feature_counts=[FeatureCounts(model_id="m", model_version=v, field="response",
    ...                                   n_documents=150, fired=f, activation_sum=np.zeros(2))
    ...                     for v, f in fired.items()])
    >>> report = build_report(view, DiffSettings(window_comparisons=False), labels={0: "lists"})
    >>> [(c.key.slug, c.verdict, c.top_down[0].label) for c in report.comparisons]
    [('m/response/v1..v2', 'drift', 'lists')]
    >>> report.generated_at == view.taken_at
    True
    """
    now = view.taken_at
    results: list[ComparisonResult] = []
    for key in plan_comparisons(view.versions, settings, view.windows):
        try:
            baseline, candidate = resolve_counts(key, view)
        except SaewatchError as exc:  # the view's "no such key": report it, keep going
            results.append(ComparisonResult(key=key, n_baseline=0, n_candidate=0,
                                            verdict="insufficient_data", message=str(exc),
                                            computed_at=now))
            continue
        bet = None if key.kind == "window" else view.bet(key.model_id, key.field, key.baseline,
                                                         key.candidate)
        results.append(compare(key, baseline, candidate, settings, labels, view, now,
                               resolve_descriptors(key, view), bet, view))
    return DriftReport(generated_at=now, comparisons=tuple(results), versions=view.versions,
                       clusters=tuple(view.cluster_shares(labels)),
                       descriptors=summaries(view, view.versions),
                       behaviours=behaviour_summaries(view, settings, labels))
