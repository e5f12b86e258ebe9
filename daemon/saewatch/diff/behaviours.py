"""Watched behaviours in the report: share per version with its interval, version tests.

For every behaviour of the view and every (model_id, version, window) it was scored in: the
share of events that showed it, with a 95% Wilson score interval. For every version comparison
the report plans (a version against the one before, and configured pairs; not the window ones),
the always-valid two-proportion test of :mod:`saewatch.diff.sequential` on the flagged counts,
with a mixture scale :data:`BEHAVIOUR_TAU` fitted to shares that move by a few points, at
``alpha / behaviours`` each: the chance that any behaviour's comparison *ever* alarms on an A/A
stream stays under ``diff.alpha``, however often the report is recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from saewatch.config import DiffSettings
from saewatch.diff.plan import plan_comparisons
from saewatch.diff.sequential import alarm_threshold, msprt_log_evidence
from saewatch.models.behaviours import (
    BehaviourComparison,
    BehaviourCount,
    BehaviourShare,
    BehaviourSummary,
)
from saewatch.views import StateView

BEHAVIOUR_TAU = 0.05  # mixture s.d. of a share's change: the alarm is most sensitive to ~5 points
Z95 = 1.959964  # two-sided 95% normal quantile
LATEST_SHOWN = 10  # matching events a summary carries


def wilson(flagged: int, documents: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (``(0, 1)`` without documents).

    >>> [round(x, 4) for x in wilson(10, 200)]
    [0.0274, 0.0896]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if documents == 0:
        return 0.0, 1.0
    p = flagged / documents
    denom = 1 + z * z / documents
    centre = (p + z * z / (2 * documents)) / denom
    half = z * math.sqrt(p * (1 - p) / documents + z * z / (4 * documents**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def share_of(c: BehaviourCount) -> BehaviourShare:
    low, high = wilson(c.flagged, c.documents)
    return BehaviourShare(model_id=c.model_id, model_version=c.model_version, window=c.window,
                          documents=c.documents, flagged=c.flagged,
                          share=c.flagged / c.documents if c.documents else 0.0,
                          ci_low=round(low, 6), ci_high=round(high, 6))


def behaviour_summaries(
    view: StateView, settings: DiffSettings, labels: Mapping[int, str] | None = None
) -> tuple[BehaviourSummary, ...]:
    """One :class:`BehaviourSummary` per behaviour of ``view``.

    >>> from datetime import UTC, datetime
    >>> from saewatch.models import VersionCount
    >>> from saewatch.models.behaviours import BehaviourDefinition
    >>> d = BehaviourDefinition(name="b", examples=("x",), features=(1,), weights=(1.0,),
    ...                         bias=0.0, threshold=1.0, encoder_id="e")
    >>> counts = [BehaviourCount(behaviour="b", model_id="m", model_version=v, field="response",
    ...                          documents=300, flagged=f) for v, f in (("v1", 3), ("v2", 30))]
    >>> view = StateView(taken_at=datetime(2026, 11, 20, tzinfo=UTC), versions=[
    ...     VersionCount(model_id="m", model_version=v, field="response", documents=300)
    ...     for v in ("v1", "v2")], behaviours=[d], behaviour_counts=counts)
    >>> s = behaviour_summaries(view, DiffSettings())[0]
    >>> [(x.model_version, x.share) for x in s.shares]
    [('v1', 0.01), ('v2', 0.1)]
    >>> c = s.comparisons[0]
    >>> (c.baseline, c.candidate, round(c.delta, 2), c.alarm)
    ('v1', 'v2', 0.09, True)
    """
    if not view.behaviours:
        return ()
    threshold = alarm_threshold(settings.alpha, len(view.behaviours))
    keys = [k for k in plan_comparisons(view.versions, settings, view.windows)
            if k.kind != "window"]
    out = []
    for d in view.behaviours:
        mine = [c for c in view.behaviour_counts if c.behaviour == d.name and c.field == d.field]
        cumulative = {(c.model_id, c.model_version): c for c in mine if c.window == "all"}
        comparisons = []
        for key in keys:
            a = cumulative.get((key.model_id, key.baseline))
            b = cumulative.get((key.model_id, key.candidate))
            if key.field != d.field or a is None or b is None or not a.documents or not b.documents:
                continue
            log_e = float(msprt_log_evidence(np.array([a.flagged]), a.documents,
                                             np.array([b.flagged]), b.documents,
                                             BEHAVIOUR_TAU)[0])
            share_a, share_b = a.flagged / a.documents, b.flagged / b.documents
            comparisons.append(BehaviourComparison(
                model_id=key.model_id, baseline=key.baseline, candidate=key.candidate,
                share_baseline=share_a, share_candidate=share_b, delta=share_b - share_a,
                log_evidence=round(log_e, 6), alarm=log_e >= threshold))
        out.append(BehaviourSummary(
            name=d.name, field=d.field, examples=d.examples, counter_examples=d.counter_examples,
            features=d.features, feature_labels=tuple((labels or {}).get(f, "")
                                                      for f in d.features),
            descriptors=d.descriptors, threshold=d.threshold, shares=tuple(share_of(c) for c in mine),
            comparisons=tuple(comparisons),
            latest=tuple(m for m in view.behaviour_matches if m.behaviour == d.name)[
                :LATEST_SHOWN]))
    return tuple(out)
