"""Response models of the JSON API (their JSON Schemas are published in the OpenAPI document).

They wrap the stage models of :mod:`saewatch.models`; nothing here is computed, only arranged.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from saewatch.llm.summary import Narrative
from saewatch.models import (
    BetEvidence,
    ClusterShare,
    ComparisonKey,
    ComparisonResult,
    DescriptorFinding,
    FeatureDelta,
    RetrievalHit,
    Snippet,
    Theme,
    Verdict,
    VersionCount,
)

# 12 hex digits of SHA-256: collisions among a handful of live comparisons are not a concern,
# and the id stays stable across reports so links and bookmarks keep working.
COMPARISON_ID_CHARS = 12


def comparison_id(key: ComparisonKey) -> str:
    """Stable, URL-safe id of a comparison.

    >>> from saewatch.models import ComparisonKey
    >>> cid = comparison_id(ComparisonKey(model_id="bot", field="response", baseline="v1",
    ...                                   candidate="v2"))
    >>> len(cid), cid == comparison_id(ComparisonKey(model_id="bot", field="response",
    ...                                              baseline="v1", candidate="v2"))
    (12, True)
    """
    raw = "\x1f".join((key.kind, key.model_id, key.field, key.baseline, key.candidate))
    return hashlib.sha256(raw.encode()).hexdigest()[:COMPARISON_ID_CHARS]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Problem(_Out):
    """An error (RFC 9457 problem details)."""

    status: int
    title: str
    detail: str


class Probe(_Out):
    """Answer of /-/healthy and /-/ready."""

    status: Literal["ok", "unavailable"]
    reason: str


class HistoryPointOut(_Out):
    at: datetime
    drift_score: float


class ComparisonSummary(_Out):
    """One comparison's statistics without its features."""

    id: str = Field(description="Stable id; use it in /api/v1/comparisons/{comparison_id}.")
    slug: str
    key: ComparisonKey
    verdict: Verdict
    message: str
    headline: str | None = Field(
        default=None, description="The first finding in words: the strongest moved text "
        "descriptor ('responses 58% shorter: median 195 -> 82 words'), if any.")
    drift_score: float
    divergence: float
    n_significant: int
    n_significant_themes: int = Field(default=0, description="Groups of co-firing features "
                                      "the strongest significant features form (see themes).")
    sequential_alarm: bool
    bet_alarm: bool = Field(default=False, description="The pooled betting test over all "
                            "features and descriptors has rejected (the verdict's main test).")
    bet: BetEvidence | None = Field(default=None, description="Where the pooled betting test "
                                    "stands; null where none runs (time-window comparisons).")
    n_baseline: int
    n_candidate: int
    computed_at: datetime

    @classmethod
    def of(cls, result: ComparisonResult) -> ComparisonSummary:
        return cls(
            id=comparison_id(result.key),
            slug=result.key.slug,
            key=result.key,
            verdict=result.verdict,
            message=result.message,
            headline=result.headline,
            drift_score=result.drift_score,
            divergence=result.divergence,
            n_significant=result.n_significant,
            n_significant_themes=result.n_significant_themes,
            sequential_alarm=result.sequential_alarm,
            bet_alarm=result.bet_alarm,
            bet=result.bet,
            n_baseline=result.n_baseline,
            n_candidate=result.n_candidate,
            computed_at=result.computed_at,
        )


class Page(_Out):
    total: int = Field(description="Items before paging.")
    offset: int
    limit: int


class ComparisonList(Page):
    generated_at: datetime | None = Field(description="When the report was computed.")
    items: list[ComparisonSummary]


class RankedFeature(_Out):
    rank: int = Field(description="1 = the largest change in this direction.")
    delta: FeatureDelta


class ComparisonDiff(Page):
    """One comparison's statistics, its text descriptors, its themes and a page of its top
    features (up first, then down)."""

    comparison: ComparisonSummary
    descriptors: list[DescriptorFinding] = Field(
        description="Every text descriptor (length, structure, script), moved ones first; "
        "read them before the features.")
    themes: list[Theme] = Field(
        default_factory=list, description="Significant features grouped by co-firing on the "
        "same documents, per direction, largest leader change first (at most top_k each); "
        "read them before the per-feature list.")
    direction: Literal["up", "down", "both"]
    features: list[RankedFeature]
    history: list[HistoryPointOut] = Field(description="Drift score over time, oldest first.")
    narrative: Narrative | None = Field(
        default=None, description="A few sentences on the findings by the optional LLM "
        "(labels.llm), written from the findings above; null when none is configured or yet.")


class VersionList(_Out):
    generated_at: datetime | None
    items: list[VersionCount]


class ClusterList(_Out):
    generated_at: datetime | None
    items: list[ClusterShare]


class SnippetList(_Out):
    feature: int
    model_id: str
    model_version: str
    field: str
    items: list[Snippet]


class RetrievalResult(_Out):
    features: list[int]
    mode: Literal["or", "and"]
    items: list[RetrievalHit]
