"""Text descriptors of two samples compared: an always-valid test per descriptor, in words.

The test. A descriptor's histogram gives, at every bucket edge ``t``, how many documents have a
value of at least ``t``. Under "no change" the two sides share one distribution, so for each
*fixed* edge the indicator ``value >= t`` is a Bernoulli variable with the same rate on both
sides: the features' mixture SPRT for two proportions (:mod:`saewatch.diff.sequential`) applies
to it unchanged, and is always valid. The edges are fixed in advance (``models/descriptors.py``),
never picked from the data, so a Bonferroni correction over every (descriptor, edge) pair keeps
the family's chance of *ever* alarming at ``alpha``. Edge 1 of a count is its presence ("has a
code block"), so presence is one of the tests; the other edges together form a sequential
Kolmogorov–Smirnov-like test, which costs only the logarithm of their number in the threshold.

The verdict. With ``diff.descriptors_in_verdict`` (the default) features and descriptor edges
form *one* Bonferroni family of ``d_sae + DESCRIPTOR_TESTS`` tests at level ``alpha``: the union
bound gives P(any feature or descriptor ever alarms on an A/A stream) ≤ ``alpha``, the verdict's
guarantee, at the price of raising the features' threshold from log(d_sae/α) to
log((d_sae + m)/α) (+0.26 at d_sae 4,096). Off, descriptors are a family of their own at ``alpha``
and never change the verdict.

The effect is the largest gap between the two sides' shares at or above an edge (signed), so
effects of different descriptors are comparable and findings are ranked by it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from saewatch.diff.descriptor_words import finding_text, headline_statistic
from saewatch.diff.sequential import alarm_threshold, msprt_log_evidence
from saewatch.models import (
    DESCRIPTORS,
    DescriptorFinding,
    DescriptorStats,
    DescriptorSummary,
    TextField,
    VersionCount,
)
from saewatch.models.descriptors import EDGES
from saewatch.views import StateView

logger = logging.getLogger(__name__)

# Tested edges: every finite edge above the lowest (at or above the lowest edge is everything).
TESTED = np.isfinite(EDGES) & (np.arange(EDGES.shape[1]) >= 1)[None, :]
DESCRIPTOR_TESTS = int(TESTED.sum())


def compare_descriptors(
    baseline: DescriptorStats, candidate: DescriptorStats, field: TextField, alpha: float,
    tau: float, n_tests: int = DESCRIPTOR_TESTS,
) -> tuple[DescriptorFinding, ...]:
    """One finding per descriptor, moved ones first (largest effect first), then the others.

    ``n_tests`` is the Bonferroni family the descriptors' edges belong to (larger when they share
    ``alpha`` with the features).

    >>> from saewatch.models import N_BINS, N_DESCRIPTORS
    >>> def stats(version, words):
    ...     hist = np.zeros((N_DESCRIPTORS, N_BINS), dtype=np.int64)
    ...     hist[0, words] = 200
    ...     sums = np.zeros(N_DESCRIPTORS); sums[0] = 200 * float(words)
    ...     return DescriptorStats(model_id="m", model_version=version, field="response",
    ...                            n_documents=200, hist=hist, sums=sums)
    >>> found = compare_descriptors(stats("a", 10), stats("b", 4), "response", 0.01, 0.2)
    >>> found[0].text, found[0].moved, found[1].moved
    ('responses 60% shorter: median 10 -> 4 words', True, False)
    """
    threshold = alarm_threshold(alpha, n_tests)
    n_a, n_b = baseline.n_documents, candidate.n_documents
    findings = []
    for d, spec in enumerate(DESCRIPTORS):
        tested = TESTED[d]
        a, b = baseline.at_least(d)[tested], candidate.at_least(d)[tested]
        evidence = msprt_log_evidence(a, n_a, b, n_b, tau)
        gaps = b / n_b - a / n_a
        j = int(np.argmax(np.abs(gaps)))
        effect = float(gaps[j])
        statistic, base_value, cand_value = headline_statistic(spec, baseline, candidate)
        best = float(evidence.max())
        direction = "none" if effect == 0 else ("up" if effect > 0 else "down")
        findings.append(DescriptorFinding(
            descriptor=spec.name, kind=spec.kind, statistic=statistic,
            baseline=base_value, candidate=cand_value,
            mean_baseline=baseline.mean(spec.name), mean_candidate=candidate.mean(spec.name),
            relative_change=cand_value / base_value - 1 if base_value > 0 else None,
            effect=effect, direction=direction, log_evidence=best, threshold=threshold,
            moved=best >= threshold,
            text=finding_text(spec, field, statistic, base_value, cand_value,
                              baseline.mean(spec.name), candidate.mean(spec.name)),
        ))
    order = {s.name: i for i, s in enumerate(DESCRIPTORS)}
    findings.sort(key=lambda f: (not f.moved, -abs(round(f.effect, 6)), order[f.descriptor]))
    return tuple(findings)


def subtract(total: DescriptorStats, part: DescriptorStats, window: str) -> DescriptorStats:
    """``total`` without the documents of ``part`` (exact: histograms and sums are counts)."""
    return DescriptorStats(
        model_id=total.model_id, model_version=total.model_version, field=total.field,
        window=window, n_documents=total.n_documents - part.n_documents,
        hist=total.hist - part.hist, sums=total.sums - part.sums)


def summaries(view: StateView, versions: Sequence[VersionCount]) -> tuple[DescriptorSummary, ...]:
    """Mean, median and presence of every descriptor per version and field (all documents)."""
    out = []
    for v in versions:
        stats = view.descriptors(v.model_id, v.model_version, v.field)
        if stats is None or stats.n_documents == 0:
            continue
        for d, spec in enumerate(DESCRIPTORS):
            out.append(DescriptorSummary(
                model_id=v.model_id, model_version=v.model_version, field=v.field,
                descriptor=spec.name, documents=stats.n_documents, mean=stats.mean(spec.name),
                median=stats.median(spec.name),
                # Above zero: bucket 0 holds exactly 0 for counts and [0, 0.25 %) for shares.
                present_share=float(stats.at_least(d)[1]) / stats.n_documents,
            ))
    return tuple(out)
