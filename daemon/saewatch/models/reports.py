"""What diff produces: :class:`ComparisonResult` values gathered in a :class:`DriftReport`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from saewatch.models.behaviours import BehaviourSummary
from saewatch.models.descriptors import DescriptorFinding, DescriptorSummary
from saewatch.models.events import (
    TextField,
)
from saewatch.models.windows import ExampleWindow

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
    """A short piece of an event's text, shown as an example of a feature.

    ``window``: the feature's top-activating token window in the text, its firing tokens
    marked (``None`` where the encoder recorded none, snippets are off, or a snapshot predates
    windows).
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    model_version: str
    activation: float
    text: str
    window: ExampleWindow | None = None


class FeatureDelta(BaseModel):
    """How one SAE feature's document frequency differs between baseline and candidate.

    ``length_explained``: whether the change is accounted for by a change of token length
    (``saewatch.diff.length``: significant in the retrieval ring's documents pooled, not once
    compared within strata of equal length); ``None`` where not assessed (a window comparison,
    too few ring documents, or a change the ring does not show). ``stratified_p`` and
    ``stratified_odds_ratio`` are that stratified (Cochran–Mantel–Haenszel) test's p-value and
    common odds ratio, candidate vs baseline.

    >>> d = FeatureDelta(feature=3, count_baseline=40, count_candidate=10, freq_baseline=0.4,
    ...                  freq_candidate=0.1, log_odds_ratio=-1.8, p_value=1e-6, q_value=1e-4,
    ...                  direction="down", length_explained=True, stratified_p=0.6)
    >>> d.length_explained, d.stratified_odds_ratio
    (True, None)
    """

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
    length_explained: bool | None = Field(
        default=None, description="The change is accounted for by a change of token length "
        "(not significant within strata of equal length); such features rank after the others. "
        "Null: not assessed.")
    stratified_p: float | None = Field(
        default=None, description="Cochran-Mantel-Haenszel p-value, stratified by token length, "
        "over the retrieval ring's documents.")
    stratified_odds_ratio: float | None = Field(
        default=None, description="Mantel-Haenszel common odds ratio at equal token length, "
        "candidate vs baseline.")


EffectBasis = Literal["any_member", "leader"]


class Theme(BaseModel):
    """Significant features of one direction that co-fire on the same documents: one
    phenomenon read as one finding (``saewatch.diff.themes``).

    ``effect`` is ``share_candidate - share_baseline``; with ``effect_basis="any_member"`` the
    shares are of documents where *any* member is present, over the recent events of the state's
    retrieval ring; with ``"leader"`` (a time-window comparison, whose two sides the ring cannot
    tell apart, or too few ring events) they are the leader's document frequencies over all events.
    Themes rank by ``leader_effect``, the leader's change over all events (the feature tables'
    ranking); ``effect`` may be smaller: a document can hold a member on either side.

    >>> t = Theme(id="up-12", direction="up", features=(12, 40), labels=("lists",), effect=0.3,
    ...           share_baseline=0.1, share_candidate=0.4, effect_basis="any_member",
    ...           leader_effect=0.35, q_value=1e-9, cohesion=0.62)
    >>> t.leader, t.size
    (12, 2)
    """

    model_config = ConfigDict(frozen=True)

    id: str  # "<direction>-<leader>": stable within a report (a feature has one direction)
    direction: Literal["up", "down"]
    features: tuple[int, ...]  # the leader (largest change in share) first, then by change
    labels: tuple[str, ...] = ()  # of the first members (at most 3) that have one
    effect: float
    share_baseline: float
    share_candidate: float
    effect_basis: EffectBasis
    leader_effect: float  # the leader's change of document frequency over all events
    q_value: float  # the leader's
    cohesion: float | None = None  # mean NPMI over member pairs; None for a single feature
    examples_baseline: tuple[Snippet, ...] = ()  # the leader's
    examples_candidate: tuple[Snippet, ...] = ()

    @property
    def leader(self) -> int:
        return self.features[0]

    @property
    def size(self) -> int:
        return len(self.features)


Verdict = Literal["insufficient_data", "no_drift", "drift"]


class BetEvidence(BaseModel):
    """Where the pooled betting test between two versions stands (``saewatch.state.betting``).

    ``peak_log_evidence`` is the running maximum of ``log E``; the test has alarmed at level
    ``α`` once it reaches ``log(1/α)``, and that stays true.
    """

    model_config = ConfigDict(frozen=True)

    model_id: str
    field: TextField
    baseline: str
    candidate: str
    pairs: int  # pairs of events bet on
    log_evidence: float  # log E now
    peak_log_evidence: float
    pending_baseline: int = 0  # events waiting for a partner of the other side
    pending_candidate: int = 0

    def alarmed(self, alpha: float) -> bool:
        """Whether the test has rejected at level ``alpha`` at some point of the stream.

        >>> BetEvidence(model_id="m", field="response", baseline="a", candidate="b", pairs=9,
        ...             log_evidence=3.0, peak_log_evidence=5.0).alarmed(0.01)
        True
        """
        return self.peak_log_evidence >= math.log(1 / alpha)


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
    # The pooled betting test between the two versions, where one runs (None: per-feature
    # verdict only, e.g. a time-window comparison); bet_alarm: it has rejected at its level.
    bet: BetEvidence | None = None
    bet_alarm: bool = False
    top_up: tuple[FeatureDelta, ...] = ()
    top_down: tuple[FeatureDelta, ...] = ()
    # Every text descriptor, moved ones first (largest effect first): read before the features.
    descriptors: tuple[DescriptorFinding, ...] = ()
    # Significant features grouped by co-firing, largest effect first, at most top_k per
    # direction; n_significant_themes: how many the strongest candidates formed before that cap.
    themes: tuple[Theme, ...] = ()
    n_significant_themes: int = 0
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
    behaviours: tuple[BehaviourSummary, ...] = ()  # watched behaviours: shares, version tests


__all__ = ["ComparisonKind", "ComparisonKey", "Snippet", "FeatureDelta", "EffectBasis", "Theme", "Verdict", "ComparisonResult", "VersionCount", "ClusterShare", "DriftReport"]
