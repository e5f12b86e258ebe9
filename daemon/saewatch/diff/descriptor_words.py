"""A descriptor finding in words: "responses 62% shorter: median 212 -> 81 words".

Which number a sentence quotes depends on the descriptor: a length or a count that most
documents have is told by its median (what a typical answer looks like); a count that most
documents lack ("has a code block") by the share of documents that have it, since its median
would be 0 on both sides; a share (upper case, non-ASCII letters) by its exact mean.
"""

from __future__ import annotations

import logging
from typing import Literal

from saewatch.models import DescriptorSpec, DescriptorStats, TextField

logger = logging.getLogger(__name__)

Statistic = Literal["median", "mean", "present"]


def headline_statistic(
    spec: DescriptorSpec, baseline: DescriptorStats, candidate: DescriptorStats
) -> tuple[Statistic, float, float]:
    """The statistic a sentence about ``spec`` quotes, and its value on each side."""
    if spec.kind == "share":
        return "mean", baseline.mean(spec.name), candidate.mean(spec.name)
    medians = baseline.median(spec.name), candidate.median(spec.name)
    if spec.presence is not None and min(medians) == 0:
        return ("present", baseline.share_at_least(spec.name, 1),
                candidate.share_at_least(spec.name, 1))
    return "median", medians[0], medians[1]


def number(value: float) -> str:
    """A count as people write it: ``1,176``, ``81``, ``2.5``.

    >>> number(1176.4), number(81), number(2.5), number(0)
    ('1,176', '81', '2.5', '0')
    """
    if value >= 10 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.1f}"


def percent(share: float) -> str:
    """``0.034`` as ``3.4%``, ``0.62`` as ``62%``."""
    return f"{100 * share:.1f}%" if share < 0.1 else f"{100 * share:.0f}%"


def finding_text(
    spec: DescriptorSpec, field: TextField, statistic: Statistic, baseline: float,
    candidate: float, mean_baseline: float, mean_candidate: float,
) -> str:
    """The sentence for one descriptor.

    >>> from saewatch.models import DESCRIPTORS
    >>> words, code = DESCRIPTORS[0], DESCRIPTORS[5]
    >>> finding_text(words, "response", "median", 212, 81, 230.0, 95.0)
    'responses 62% shorter: median 212 -> 81 words'
    >>> finding_text(code, "response", "present", 0.12, 0.03, 0.15, 0.04)
    'responses with a code block: 12% -> 3.0% (mean 0.2 -> 0.0 code blocks)'
    """
    docs = f"{field}s"
    if statistic == "mean":
        return f"{spec.unit} in {docs}: mean {percent(baseline)} -> {percent(candidate)}"
    if statistic == "present":
        return (f"{docs} with {spec.presence}: {percent(baseline)} -> {percent(candidate)} "
                f"(mean {mean_baseline:.1f} -> {mean_candidate:.1f} {spec.unit})")
    values = f"median {number(baseline)} -> {number(candidate)}"
    if baseline <= 0 or baseline == candidate:
        return f"{docs}: {values} {spec.unit}"
    change = candidate / baseline - 1
    word = spec.more if change > 0 else spec.less
    if spec.more == "more":  # a count, not a length: "have 40% more list items: median 5 -> 7"
        return f"{docs} have {abs(change):.0%} {word} {spec.unit}: {values}"
    return f"{docs} {abs(change):.0%} {word}: {values} {spec.unit}"
