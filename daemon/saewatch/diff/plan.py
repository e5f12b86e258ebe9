"""Which comparisons to run, from the versions seen so far and the settings.

Three kinds, in this order, without duplicates:

* ``versions``: each configured :class:`~saewatch.config.ComparisonSpec`, per listed field;
* ``latest``: per model_id (when ``auto_latest``), its newest version against the one before,
  ordered by first event time (then name);
* ``window``: per model_id (when ``window_comparisons``), its newest version's recent window
  (e.g. ``1h``) against the same version's earlier documents. The key's baseline is the version
  and its candidate ``"<version>@<window>"``; the baseline counts are the cumulative counts
  *minus* the window's, so the two samples are disjoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from saewatch.config import DiffSettings
from saewatch.diff.descriptors import subtract
from saewatch.models import ComparisonKey, DescriptorStats, FeatureCounts, VersionCount
from saewatch.views import StateView

logger = logging.getLogger(__name__)

WINDOW_SEPARATOR = "@"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def versions_in_order(versions: Sequence[VersionCount], model_id: str, field: str) -> list[str]:
    """Versions of ``model_id`` with documents in ``field``, oldest first (by first event)."""
    rows = [v for v in versions if v.model_id == model_id and v.field == field and v.documents]
    rows.sort(key=lambda v: (v.first_seen or _EPOCH, v.model_version))
    return [v.model_version for v in rows]


def plan_comparisons(
    versions: Sequence[VersionCount], settings: DiffSettings, windows: Sequence[str] = ()
) -> list[ComparisonKey]:
    """The comparisons to compute now.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 11, 20, tzinfo=UTC)
    >>> vs = [VersionCount(model_id="m", model_version=v, field="response", documents=500,
    ...                    first_seen=t + timedelta(days=i)) for i, v in enumerate(["a", "b"])]
    >>> [k.slug for k in plan_comparisons(vs, DiffSettings(), windows=["1h"])]
    ['m/response/a..b', 'm/response/b..b@1h']
    """
    keys: list[ComparisonKey] = []
    for spec in settings.comparisons:
        keys += [ComparisonKey(model_id=spec.model_id, field=f, baseline=spec.baseline,
                               candidate=spec.candidate, kind="versions") for f in spec.fields]
    model_ids = sorted({v.model_id for v in versions})
    for model_id in model_ids:
        for field in settings.fields:
            ordered = versions_in_order(versions, model_id, field)
            if settings.auto_latest and len(ordered) >= 2:
                keys.append(ComparisonKey(model_id=model_id, field=field, baseline=ordered[-2],
                                          candidate=ordered[-1], kind="latest"))
            if settings.window_comparisons and ordered:
                keys += [ComparisonKey(model_id=model_id, field=field, baseline=ordered[-1],
                                       candidate=f"{ordered[-1]}{WINDOW_SEPARATOR}{w}",
                                       kind="window") for w in windows if w != "all"]
    return _unique(keys)


def _unique(keys: list[ComparisonKey]) -> list[ComparisonKey]:
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for k in keys:
        ident = (k.model_id, k.field, k.baseline, k.candidate)
        if ident not in seen:
            seen.add(ident)
            out.append(k)
    return out


def resolve_counts(key: ComparisonKey, view: StateView) -> tuple[FeatureCounts, FeatureCounts]:
    """Baseline and candidate counts of ``key`` in ``view`` (disjoint samples for window
    comparisons); raises :class:`~saewatch.views.UnknownCountsError` for a version not seen."""
    if key.kind != "window":
        return (view.counts(key.model_id, key.baseline, key.field, "all"),
                view.counts(key.model_id, key.candidate, key.field, "all"))
    version, _, window = key.candidate.rpartition(WINDOW_SEPARATOR)
    total = view.counts(key.model_id, version, key.field, "all")
    recent = view.counts(key.model_id, version, key.field, window)
    before = FeatureCounts(
        model_id=key.model_id, model_version=version, field=key.field,
        window=f"before-{window}", n_documents=total.n_documents - recent.n_documents,
        fired=total.fired - recent.fired,
        activation_sum=total.activation_sum - recent.activation_sum,
    )
    return before, recent


def resolve_descriptors(
    key: ComparisonKey, view: StateView
) -> tuple[DescriptorStats, DescriptorStats] | None:
    """Baseline and candidate descriptor histograms of ``key`` (disjoint, as for the counts);
    ``None`` when the view lacks either side (no descriptors yet, or an older state)."""
    if key.kind != "window":
        base = view.descriptors(key.model_id, key.baseline, key.field, "all")
        cand = view.descriptors(key.model_id, key.candidate, key.field, "all")
        return None if base is None or cand is None else (base, cand)
    version, _, window = key.candidate.rpartition(WINDOW_SEPARATOR)
    total = view.descriptors(key.model_id, version, key.field, "all")
    recent = view.descriptors(key.model_id, version, key.field, window)
    if total is None or recent is None:
        return None
    return subtract(total, recent, f"before-{window}"), recent
