"""What diff produces: :class:`ComparisonResult` values gathered in a :class:`DriftReport`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
)

from saewatch.models.descriptors import DescriptorFinding, DescriptorSummary
from saewatch.models.events import (
    TextField,
)

ComparisonKind = Literal["versions", "latest", "window"]


class ComparisonKey(BaseModel):
    """What is compared: a baseline and a candidate of one model_id and text field.

    For ``kind="window"`` baseline/candidate name windows of one version ("baseline", "1h"...).
    """

    model_config = ConfigDict(frozen=True)

    model_id: str
    field: TextField
    baseline: str
    candidate: str
    kind: ComparisonKind = "versions"

    @property
    def slug(self) -> str:
        return f"{self.model_id}/{self.field}/{self.baseline}..{self.candidate}"


class Snippet(BaseModel):
    """A short piece of an event's text, shown as an example of a feature."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    model_version: str
    activation: float
    text: str


class FeatureDelta(BaseModel):
    """How one SAE feature's document frequency differs between baseline and candidate."""

    model_config = ConfigDict(frozen=True)

    feature: int
    label: str | None = None
    count_baseline: int
    count_candidate: int
    freq_baseline: float
    freq_candidate: float
    log_odds_ratio: float  # smoothed, candidate vs baseline; > 0 means more frequent now
    p_value: float
    q_value: float  # Benjamini-Hochberg over all features of the comparison
    direction: Literal["up", "down"]
    examples_baseline: tuple[Snippet, ...] = ()
    examples_candidate: tuple[Snippet, ...] = ()


Verdict = Literal["insufficient_data", "no_drift", "drift"]


class ComparisonResult(BaseModel):
    """The diff of one comparison at one moment."""

    model_config = ConfigDict(frozen=True)

    key: ComparisonKey
    n_baseline: int
    n_candidate: int
    verdict: Verdict
    message: str = ""
    drift_score: float = 0.0  # calibrated: ~0 for A/A, grows with real change
    divergence: float = 0.0  # Jensen-Shannon divergence of the feature-frequency profiles
    n_significant: int = 0  # features with q below the configured level
    sequential_alarm: bool = False  # always-valid test over the whole stream has rejected
    top_up: tuple[FeatureDelta, ...] = ()
    top_down: tuple[FeatureDelta, ...] = ()
    # Every text descriptor, moved ones first (largest effect first): read before the features.
    descriptors: tuple[DescriptorFinding, ...] = ()
    computed_at: datetime

    @property
    def moved_descriptors(self) -> tuple[DescriptorFinding, ...]:
        return tuple(d for d in self.descriptors if d.moved)

    @property
    def headline(self) -> str | None:
        """The first finding in words: the strongest moved descriptor, if any."""
        moved = self.moved_descriptors
        return moved[0].text if moved else None


class VersionCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_id: str
    model_version: str
    field: TextField
    documents: int
    first_seen: datetime | None = None
    last_seen: datetime | None = None


class ClusterShare(BaseModel):
    model_config = ConfigDict(frozen=True)

    cluster: int
    model_id: str
    model_version: str
    share: float
    documents: int
    top_features: tuple[int, ...] = ()
    top_labels: tuple[str, ...] = ()


class DriftReport(BaseModel):
    """The latest immutable view export serves; replaced whole, never mutated."""

    model_config = ConfigDict(frozen=True)

    generated_at: datetime
    comparisons: tuple[ComparisonResult, ...] = ()
    versions: tuple[VersionCount, ...] = ()
    clusters: tuple[ClusterShare, ...] = ()
    descriptors: tuple[DescriptorSummary, ...] = ()  # per version and field, everything seen


__all__ = ["ComparisonKind", "ComparisonKey", "Snippet", "FeatureDelta", "Verdict", "ComparisonResult", "VersionCount", "ClusterShare", "DriftReport"]
