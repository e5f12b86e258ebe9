"""What export reads from state: counts, frequencies, NPMI neighbours, feature details, hits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from saewatch.models.events import (
    TextField,
)
from saewatch.models.reports import (
    Snippet,
)

WindowName = str  # "all" (cumulative) or a configured window name such as "1h"


class FeatureCounts(BaseModel):
    """Document counts of one (model_id, model_version, field) over one window.

    ``fired[j]`` is the number of documents in which feature ``j`` fired; ``activation_sum[j]`` the
    sum of its max-pooled activations over those documents. Both have length ``d_sae``.

    >>> c = FeatureCounts(model_id="m", model_version="v1", field="response", window="all",
    ...                   n_documents=2, fired=np.array([2, 0, 1]),
    ...                   activation_sum=np.array([1.5, 0.0, 0.25]))
    >>> c.d_sae, c.frequency().tolist()
    (3, [1.0, 0.0, 0.5])
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model_id: str
    model_version: str
    field: TextField
    window: WindowName = "all"
    n_documents: int = Field(ge=0)
    fired: np.ndarray  # int64[d_sae]
    activation_sum: np.ndarray  # float64[d_sae]

    @model_validator(mode="after")
    def _check_arrays(self) -> FeatureCounts:
        if self.fired.ndim != 1 or self.fired.shape != self.activation_sum.shape:
            raise ValueError("fired and activation_sum must be 1-d arrays of length d_sae")
        return self

    @property
    def d_sae(self) -> int:
        return int(self.fired.shape[0])

    def frequency(self) -> np.ndarray:
        """Fraction of documents in which each feature fired (zeros when there are none)."""
        return self.fired / max(self.n_documents, 1)


MAX_COOCCURRENCE_FEATURES = 64  # one bit each in a document's presence mask (uint64)


class CooccurrenceCounts(BaseModel):
    """Document co-occurrence of a few features among the recent events of some versions.

    Counted per version ``versions[s]`` of one model_id and text field, over the events the
    retrieval ring holds (``RetrievalSource.cooccurrence``): ``n_documents[s]`` documents,
    ``joint[s, i, j]`` of them with both ``features[i]`` and ``features[j]`` present (the
    diagonal: with ``features[i]``). ``npmi[i, j]`` is the NPMI of the pair within each version,
    averaged over the versions where both occur, weighted by documents (pooling the versions
    would make two features that merely rise together look co-firing). ``masks`` holds, per
    document with at least one of the features, bit ``i`` set where ``features[i]`` is present,
    and ``mask_version`` its version's index: enough for the documents with *any* of a subset
    (:meth:`any_present`). ``saturated[s]`` counts the documents indexed with as many features
    as the ring keeps per event: their weaker present features are missing, so shares of
    present documents are only exact where it is 0.

    >>> counts = CooccurrenceCounts.empty([5, 9], "m", ["v1"], "response")
    >>> counts.n_documents.tolist(), counts.index(9), counts.any_present([5, 9]).tolist()
    ([0], 1, [0])
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model_id: str
    field: TextField
    versions: tuple[str, ...]
    features: tuple[int, ...]
    n_documents: np.ndarray  # int64[versions]
    saturated: np.ndarray  # int64[versions]
    joint: np.ndarray  # int64[versions, features, features]
    npmi: np.ndarray  # float64[features, features], 1 on the diagonal
    masks: np.ndarray  # uint64[documents with any of the features]
    mask_version: np.ndarray  # int64[same]: index into versions

    @model_validator(mode="after")
    def _check_shapes(self) -> CooccurrenceCounts:
        v, k = len(self.versions), len(self.features)
        if k > MAX_COOCCURRENCE_FEATURES:
            raise ValueError(f"{k} features: at most {MAX_COOCCURRENCE_FEATURES} fit a mask")
        if (self.n_documents.shape != (v,) or self.saturated.shape != (v,)
                or self.joint.shape != (v, k, k)
                or self.npmi.shape != (k, k) or self.masks.shape != self.mask_version.shape):
            raise ValueError("co-occurrence arrays do not match versions and features")
        return self

    @classmethod
    def empty(cls, features: Sequence[int], model_id: str, versions: Sequence[str],
              field: TextField) -> CooccurrenceCounts:
        """No documents seen (a state without a retrieval ring, say)."""
        v, k = len(versions), len(features)
        return cls(model_id=model_id, field=field, versions=tuple(versions),
                   features=tuple(int(f) for f in features),
                   n_documents=np.zeros(v, np.int64), saturated=np.zeros(v, np.int64),
                   joint=np.zeros((v, k, k), np.int64),
                   npmi=np.zeros((k, k)), masks=np.zeros(0, np.uint64),
                   mask_version=np.zeros(0, np.int64))

    def index(self, feature: int) -> int:
        """Position of ``feature`` in :attr:`features` (ValueError when it was not asked for)."""
        return self.features.index(feature)

    def fired(self) -> np.ndarray:
        """Documents with each feature, per version: ``int64[versions, features]``."""
        return np.diagonal(self.joint, axis1=1, axis2=2).copy()

    def any_present(self, features: Sequence[int]) -> np.ndarray:
        """Documents with at least one of ``features`` present, per version."""
        bits = np.uint64(0)
        for f in features:
            bits |= np.uint64(1) << np.uint64(self.index(f))
        hit = (self.masks & bits) != 0
        return np.bincount(self.mask_version[hit], minlength=len(self.versions)).astype(np.int64)


class LengthStrata(BaseModel):
    """Documents, and documents with each of a few features, per version and token-length
    stratum, among the recent events of the retrieval ring (``RetrievalSource.length_strata``).

    Stratum ``s`` holds the documents whose token count ``t`` (``SparseCodes.n_tokens``: the
    tokens the encoder read) has ``edges[s - 1] <= t < edges[s]``: the first from 0, the last
    open-ended, ``len(edges) + 1`` in all. For version ``versions[v]``: ``n_documents[v, s]``
    documents, ``present[v, s, i]`` of them with ``features[i]`` present (among the event's
    strongest indexed features, as for co-occurrence), ``saturated[v, s]`` of them indexed with
    as many features as the ring keeps per event, and ``unknown[v]`` events whose token count
    the ring does not know (restored from a snapshot written before it kept them): in no
    stratum.

    >>> s = LengthStrata.empty([5], "m", ["v1", "v2"], "response", [10, 100])
    >>> s.n_documents.shape, s.present.shape, s.n_strata
    ((2, 3), (2, 3, 1), 3)
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model_id: str
    field: TextField
    versions: tuple[str, ...]
    features: tuple[int, ...]
    edges: tuple[int, ...]  # strictly increasing
    n_documents: np.ndarray  # int64[versions, strata]
    present: np.ndarray  # int64[versions, strata, features]
    saturated: np.ndarray  # int64[versions, strata]
    unknown: np.ndarray  # int64[versions]

    @model_validator(mode="after")
    def _check_shapes(self) -> LengthStrata:
        v, s, k = len(self.versions), self.n_strata, len(self.features)
        if np.any(np.diff(np.asarray(self.edges, dtype=np.int64)) <= 0):
            raise ValueError(f"stratum edges must increase strictly: {self.edges}")
        if (self.n_documents.shape != (v, s) or self.present.shape != (v, s, k)
                or self.saturated.shape != (v, s) or self.unknown.shape != (v,)):
            raise ValueError("length-strata arrays do not match versions, strata and features")
        return self

    @property
    def n_strata(self) -> int:
        return len(self.edges) + 1

    @classmethod
    def empty(cls, features: Sequence[int], model_id: str, versions: Sequence[str],
              field: TextField, edges: Sequence[int]) -> LengthStrata:
        """No documents seen (a state without a retrieval ring, say)."""
        v, s, k = len(versions), len(edges) + 1, len(features)
        return cls(model_id=model_id, field=field, versions=tuple(versions),
                   features=tuple(int(f) for f in features), edges=tuple(int(e) for e in edges),
                   n_documents=np.zeros((v, s), np.int64), present=np.zeros((v, s, k), np.int64),
                   saturated=np.zeros((v, s), np.int64), unknown=np.zeros(v, np.int64))


class FeatureFrequency(BaseModel):
    """How often one feature fired in one (model_id, model_version, field, window)."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    model_version: str
    field: TextField
    window: WindowName = "all"
    documents: int
    fired: int
    frequency: float


NeighbourKind = Literal["feature", "prompt_feature", "response_feature", "metadata"]


class NpmiNeighbour(BaseModel):
    """Something that co-occurs with a feature, scored by normalised PMI in [-1, 1].

    ``kind="feature"``: another feature of the same text field; ``prompt_feature`` /
    ``response_feature``: a feature of the other field of the same event; ``metadata``: an event
    metadata value (``metadata_key=metadata_value``). ``count`` is the number of documents where both
    occurred.
    """

    model_config = ConfigDict(frozen=True)

    feature: int | None = None
    label: str | None = None
    kind: NeighbourKind
    metadata_key: str | None = None
    metadata_value: str | None = None
    npmi: float
    count: int


class NpmiPair(BaseModel):
    """One pair with its NPMI, as listed by ``npmi_top_pairs``."""

    model_config = ConfigDict(frozen=True)

    feature: int
    label: str | None = None
    other: NpmiNeighbour


class FeatureDetail(BaseModel):
    """Everything known about one feature: frequencies per version, examples, neighbours."""

    model_config = ConfigDict(frozen=True)

    feature: int
    label: str | None = None
    frequencies: tuple[FeatureFrequency, ...] = ()
    examples: tuple[Snippet, ...] = ()
    neighbours: tuple[NpmiNeighbour, ...] = ()


class RetrievalHit(BaseModel):
    """A recent event matched by a feature query; ``score`` is the summed matched activation."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    model_id: str
    model_version: str
    field: TextField
    timestamp: datetime
    score: float
    matched_features: tuple[int, ...]
    snippet: str | None = None


__all__ = ["WindowName", "FeatureCounts", "MAX_COOCCURRENCE_FEATURES", "CooccurrenceCounts", "LengthStrata", "FeatureFrequency", "NeighbourKind", "NpmiNeighbour", "NpmiPair", "FeatureDetail", "RetrievalHit"]
