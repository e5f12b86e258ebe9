"""What export reads from state: counts, frequencies, NPMI neighbours, feature details, hits."""

from __future__ import annotations

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


__all__ = ["WindowName", "FeatureCounts", "FeatureFrequency", "NeighbourKind", "NpmiNeighbour", "NpmiPair", "FeatureDetail", "RetrievalHit"]
