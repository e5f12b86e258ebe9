"""Build the immutable :class:`DriftReport` that export serves: plan, resolve counts, compare."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from saewatch.config import DiffSettings
from saewatch.diff.compare import ExamplesFn, compare
from saewatch.diff.plan import CountsFn, plan_comparisons, resolve_counts
from saewatch.errors import SaewatchError
from saewatch.models import ClusterShare, ComparisonResult, DriftReport, VersionCount

logger = logging.getLogger(__name__)


def build_report(
    versions: Sequence[VersionCount],
    counts: CountsFn,
    settings: DiffSettings,
    windows: Sequence[str] = (),
    labels: Mapping[int, str] | None = None,
    examples: ExamplesFn | None = None,
    clusters: Sequence[ClusterShare] = (),
    now: datetime | None = None,
) -> DriftReport:
    """Compute every planned comparison.

    A comparison whose counts are missing (a configured version that has not been seen yet) is
    reported as ``insufficient_data`` with the reason instead of failing the whole report.

    Examples
    --------
    >>> import numpy as np
    >>> from saewatch.models import FeatureCounts
    >>> fired = {"v1": [150, 0], "v2": [0, 150]}
    >>> def counts(model_id, version, field, window):
    ...     return FeatureCounts(model_id=model_id, model_version=version, field=field,
    ...                          n_documents=150, fired=np.array(fired[version]),
    ...                          activation_sum=np.zeros(2))
    >>> versions = [VersionCount(model_id="m", model_version=v, field="response", documents=150)
    ...             for v in fired]
    >>> report = build_report(versions, counts, DiffSettings(window_comparisons=False))
    >>> [(c.key.slug, c.verdict) for c in report.comparisons]
    [('m/response/v1..v2', 'drift')]
    """
    now = now or datetime.now(UTC)
    results: list[ComparisonResult] = []
    for key in plan_comparisons(versions, settings, windows):
        try:
            baseline, candidate = resolve_counts(key, counts)
        except SaewatchError as exc:  # the state's "no such key": report it, keep going
            results.append(ComparisonResult(key=key, n_baseline=0, n_candidate=0,
                                            verdict="insufficient_data", message=str(exc),
                                            computed_at=now))
            continue
        results.append(compare(key, baseline, candidate, settings, labels, examples, now))
    return DriftReport(generated_at=now, comparisons=tuple(results), versions=tuple(versions),
                       clusters=tuple(clusters))
