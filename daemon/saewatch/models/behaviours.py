"""Watched behaviours: a behaviour defined by example texts, scored on every event.

A :class:`BehaviourDefinition` is what fitting a handful of examples gives (``state/
behaviour_fit.py``): the SAE features specific to the examples, one weight each, the text
descriptors (length, structure, script) on which the examples stand out, one weight each, a bias
and a threshold. Scoring an event is a sparse dot product over its present features, so it costs a few
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
from saewatch.models.descriptors import DESCRIPTORS, descriptor_index
from saewatch.models.events import TextField

# A behaviour's name is a Prometheus label value and a URL segment: short and plain.
BehaviourName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
MAX_BEHAVIOURS = 32  # configured, not discovered: bounds the metrics' cardinality
MAX_BEHAVIOUR_FEATURES = 32  # features a scorer may weigh (selection keeps the most specific)
Z_CLIP = 5.0  # a descriptor's standardised value is clipped to +-5 background spreads


def descriptor_transform(values: np.ndarray) -> np.ndarray:
    """What the scorer reads of descriptor values ``[n, N_DESCRIPTORS]``: log(1 + count) for
    counts (a doubling of length moves it as much at 100 words as at 1,000), shares as they are.

    >>> descriptor_transform(np.array([[0.0] * 9 + [0.5, 0.25]]))[0, [0, 9, 10]].tolist()
    [0.0, 0.5, 0.25]
    """
    out = np.asarray(values, dtype=np.float64).copy()
    counts = [i for i, d in enumerate(DESCRIPTORS) if d.kind == "count"]
    out[:, counts] = np.log1p(np.maximum(out[:, counts], 0.0))
    return out


class BehaviourDefinition(BaseModel):
    """A behaviour: its defining texts and the linear scorer fitted on their SAE codes.

    ``score(x) = bias + Σ_j weights[j] · [feature j present in x] + Σ_k descriptor_weights[k]
    · z_k(x)``, with ``z_k = (t_k(x) - descriptor_center[k]) / descriptor_scale[k]`` the
    descriptor's transformed value (:func:`descriptor_transform`) in spreads of the background,
    clipped to ±:data:`Z_CLIP`; an event *shows* the behaviour when its score reaches
    ``threshold``. Where an event's descriptors are unknown (an older ring event without its
    text) they count as the background's center (``z = 0``).

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
    descriptors: tuple[str, ...] = ()  # names (saewatch.models.DESCRIPTOR_NAMES)
    descriptor_weights: tuple[float, ...] = ()
    descriptor_center: tuple[float, ...] = ()
    descriptor_scale: tuple[float, ...] = ()
    bias: float
    threshold: float
    encoder_id: str
    # How the fit went: the examples (and background events) the fitted scorer flags.
    example_recall: float = 1.0
    background_rate: float = 0.0
    background_documents: int = 0
    background_source: str = ""
    created_at: datetime | None = None

    def scores(self, codes: SparseCodes, descriptors: np.ndarray | None = None) -> np.ndarray:
        """The score of every document of ``codes`` (float64, one per row); ``descriptors``:
        their descriptor values ``[n, N_DESCRIPTORS]`` (``None`` or NaN rows: unknown)."""
        n = len(codes)
        out = np.full(n, self.bias, dtype=np.float64)
        if self.descriptors and descriptors is not None and n:
            out += self.descriptor_terms(descriptors)
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

    def descriptor_terms(self, descriptors: np.ndarray) -> np.ndarray:
        """``Σ_k descriptor_weights[k] · z_k`` per row of ``descriptors``."""
        cols = [descriptor_index(name) for name in self.descriptors]
        z = ((descriptor_transform(descriptors)[:, cols] - np.asarray(self.descriptor_center))
             / np.asarray(self.descriptor_scale))
        z = np.clip(np.nan_to_num(z, nan=0.0), -Z_CLIP, Z_CLIP)
        terms: np.ndarray = z @ np.asarray(self.descriptor_weights, dtype=np.float64)
        return terms

    def flags(self, codes: SparseCodes, descriptors: np.ndarray | None = None) -> np.ndarray:
        """Whether each document shows the behaviour."""
        return self.scores(codes, descriptors) >= self.threshold


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
    descriptors: tuple[str, ...] = ()  # text descriptors its scorer weighs too
    threshold: float
    shares: tuple[BehaviourShare, ...] = ()
    comparisons: tuple[BehaviourComparison, ...] = ()
    latest: tuple[BehaviourMatch, ...] = ()


__all__ = ["MAX_BEHAVIOURS", "MAX_BEHAVIOUR_FEATURES", "Z_CLIP", "BehaviourComparison",
           "BehaviourCount", "descriptor_transform",
           "BehaviourDefinition", "BehaviourMatch", "BehaviourName", "BehaviourShare",
           "BehaviourSummary"]
