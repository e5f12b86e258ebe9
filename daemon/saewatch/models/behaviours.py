"""Watched behaviours: a behaviour defined by example texts, scored on every event.

A :class:`BehaviourDefinition` is what fitting a handful of examples gives (``state/
behaviour_fit.py``): the SAE features specific to the examples, one weight each, a bias and a
threshold. Scoring an event is a sparse dot product over its present features, so it costs a few
microseconds beside the encoder's milliseconds. The state counts, per (model_id, version, field,
window), the events scored and those flagged (:class:`BehaviourCount`); diff turns the counts into
shares with confidence intervals and anytime-valid version tests (:class:`BehaviourSummary`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from saewatch.models.codes import SparseCodes
from saewatch.models.events import TextField

# A behaviour's name is a Prometheus label value and a URL segment: short and plain.
BehaviourName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
MAX_BEHAVIOURS = 32  # configured, not discovered: bounds the metrics' cardinality
MAX_BEHAVIOUR_FEATURES = 32  # features a scorer may weigh (selection keeps the most specific)


class BehaviourDefinition(BaseModel):
    """A behaviour: its defining texts and the linear scorer fitted on their SAE codes.

    ``score(x) = bias + Σ_j weights[j] · [feature j present in x]``; an event *shows* the
    behaviour when its score reaches ``threshold``.

    >>> d = BehaviourDefinition(name="pirate", field="response", examples=("Ahoy!",),
    ...                         features=(3, 5), weights=(2.0, 1.5), bias=-2.5, threshold=0.0,
    ...                         encoder_id="enc")
    >>> codes = SparseCodes.from_rows([[3, 5], [3], [1]], [[1.0, 1.0], [1.0], [1.0]])
    >>> d.scores(codes).tolist(), d.flags(codes).tolist()
    ([1.0, -0.5, -2.5], [True, False, False])
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: BehaviourName
    field: TextField = "response"
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...] = ()
    features: tuple[int, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    encoder_id: str
    # How the fit went: the examples (and background events) the fitted scorer flags.
    example_recall: float = 1.0
    background_rate: float = 0.0
    background_documents: int = 0
    background_source: str = ""
    created_at: datetime | None = None

    def scores(self, codes: SparseCodes) -> np.ndarray:
        """The score of every document of ``codes`` (float64, one per row)."""
        n = len(codes)
        out = np.full(n, self.bias, dtype=np.float64)
        if not self.features or len(codes.indices) == 0:
            return out
        feats = np.asarray(self.features, dtype=np.int64)
        order = np.argsort(feats)
        pos = np.searchsorted(feats[order], codes.indices)
        pos = np.minimum(pos, len(feats) - 1)
        hit = feats[order][pos] == codes.indices
        rows = np.repeat(np.arange(n), np.diff(codes.indptr))
        w = np.asarray(self.weights, dtype=np.float64)[order]
        out += np.bincount(rows[hit], weights=w[pos[hit]], minlength=n)
        return out

    def flags(self, codes: SparseCodes) -> np.ndarray:
        """Whether each document shows the behaviour."""
        return self.scores(codes) >= self.threshold


class BehaviourCount(BaseModel):
    """Events scored for a behaviour, and those flagged, in one key and window."""

    model_config = ConfigDict(frozen=True)

    behaviour: str
    model_id: str
    model_version: str
    field: TextField
    window: str = "all"
    documents: int = Field(ge=0)
    flagged: int = Field(ge=0)


class BehaviourMatch(BaseModel):
    """One recent event that showed a behaviour."""

    model_config = ConfigDict(frozen=True)

    behaviour: str
    event_id: str
    model_id: str
    model_version: str
    timestamp: datetime
    score: float
    snippet: str | None = None


class BehaviourShare(BaseModel):
    """The share of events showing a behaviour in one version and window, with a 95% interval
    (Wilson score)."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    model_version: str
    window: str
    documents: int
    flagged: int
    share: float
    ci_low: float
    ci_high: float


class BehaviourComparison(BaseModel):
    """A behaviour's share in a candidate version against its baseline, with the always-valid
    two-proportion test (mixture SPRT) at the behaviours' share of alpha."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    baseline: str
    candidate: str
    share_baseline: float
    share_candidate: float
    delta: float  # candidate - baseline, in share (0.05 = 5 points)
    log_evidence: float
    alarm: bool


class BehaviourSummary(BaseModel):
    """What a report says about one behaviour: its definition, shares and version tests."""

    model_config = ConfigDict(frozen=True)

    name: str
    field: TextField
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...] = ()
    features: tuple[int, ...]
    feature_labels: tuple[str, ...] = ()
    threshold: float
    shares: tuple[BehaviourShare, ...] = ()
    comparisons: tuple[BehaviourComparison, ...] = ()
    latest: tuple[BehaviourMatch, ...] = ()


__all__ = ["MAX_BEHAVIOURS", "MAX_BEHAVIOUR_FEATURES", "BehaviourComparison", "BehaviourCount",
           "BehaviourDefinition", "BehaviourMatch", "BehaviourName", "BehaviourShare",
           "BehaviourSummary"]
