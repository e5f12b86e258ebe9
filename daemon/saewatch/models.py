"""Typed, frozen models exchanged between stages (the only thing stages share).

``source`` yields :class:`Record` (a validated :class:`LLMEvent` and where it came from) and
:class:`InvalidRecord`; ``encode`` turns records' events into a :class:`FeatureBatch` of sparse
codes; ``state`` folds batches in; ``diff`` produces :class:`ComparisonResult` values gathered in a
:class:`DriftReport`, which ``export`` serves.

>>> e = LLMEvent.model_validate_json(
...     '{"event_id": "e1", "timestamp": "2026-11-20T10:00:00Z", "model_id": "support-bot",'
...     ' "model_version": "v2", "prompt": "Hi", "response": "Hello!"}')
>>> e.model_version, e.timestamp.year
('v2', 2026)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

TextField = Literal["prompt", "response"]
# (topic, partition): the one key of a partition everywhere in saewatch (sources, offsets,
# checkpoints); kafka-python's own TopicPartition stays inside the Kafka source.
TopicPartition = tuple[str, int]
TEXT_FIELDS: tuple[TextField, ...] = ("prompt", "response")

# Bounds on metadata keep per-event memory and label cardinality predictable.
MAX_METADATA_ENTRIES = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 256

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NAME_PATTERN)]
MetadataKey = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_METADATA_KEY_CHARS, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$"
    ),
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]


def _bounded_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_ENTRIES:
        raise ValueError(
            f"metadata has {len(value)} entries; at most {MAX_METADATA_ENTRIES} are allowed "
            "(keep it to a few low-cardinality labels such as tenant, route, locale)"
        )
    return value


class LLMEvent(BaseModel):
    """One prompt/response exchange of a deployed LLM, as it arrives on the events topic.

    Validation is strict: unknown fields, wrong types and naive timestamps are rejected.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="LLMEvent")

    event_id: Identifier = Field(description="Unique id of the event (idempotency key).")
    timestamp: AwareDatetime = Field(description="When the response was produced, RFC 3339.")
    model_id: Name = Field(description="The deployed application or model, e.g. 'support-bot'.")
    model_version: Name = Field(description="Version of the model behind it, e.g. '2026-11-20'.")
    prompt: str = Field(description="The user's prompt (or the last user turn).")
    response: str = Field(description="The model's response.")
    conversation_id: Identifier | None = Field(default=None, description="Optional thread id.")
    metadata: Annotated[dict[MetadataKey, MetadataValue], AfterValidator(_bounded_metadata)] = (
        Field(
            default_factory=dict,
            description=f"Small map of low-cardinality labels (at most {MAX_METADATA_ENTRIES}).",
        )
    )

    def text(self, field: TextField) -> str:
        return self.prompt if field == "prompt" else self.response


class SourcePosition(BaseModel):
    """Where a record was read: a Kafka topic/partition/offset or a file and line number."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class Record(BaseModel):
    """A valid event and where it came from; ``truncated_fields`` lists fields cut to the limit.

    ``codes`` is set when the record was read from the features topic (``saewatch aggregate``):
    the event arrives already encoded, as a one-event :class:`FeatureBatch`.
    """

    model_config = ConfigDict(frozen=True)

    event: LLMEvent
    position: SourcePosition
    truncated_fields: tuple[TextField, ...] = ()
    codes: FeatureBatch | None = None


InvalidReason = Literal["invalid_json", "schema", "encoding", "oversize"]


class InvalidRecord(BaseModel):
    """A record that failed validation; it goes to the dead-letter topic unchanged."""

    model_config = ConfigDict(frozen=True)

    position: SourcePosition
    reason: InvalidReason
    error: str
    raw: bytes
    key: bytes | None = None


class SourceBatch(BaseModel):
    """What one ``poll_batch`` returns: valid records and invalid ones, in offset order."""

    model_config = ConfigDict(frozen=True)

    records: tuple[Record, ...] = ()
    invalid: tuple[InvalidRecord, ...] = ()

    def __len__(self) -> int:
        return len(self.records) + len(self.invalid)


class SparseCodes(BaseModel):
    """Sparse SAE document codes of one text field over a batch, in CSR layout.

    Row ``i`` is ``indices[indptr[i]:indptr[i+1]]`` (feature ids, int32, ascending) with their
    max-pooled activations ``values`` (float16, all above the encoder's threshold).

    >>> c = SparseCodes.from_rows([[3, 7], []], [[1.5, 0.25], []], n_tokens=[12, 0])
    >>> c.row(0)[0].tolist(), len(c)
    ([3, 7], 2)
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_tokens: np.ndarray  # tokens encoded per document, after truncation and masking
    truncated: np.ndarray  # True where the token budget cut the text

    @model_validator(mode="after")
    def _check_shapes(self) -> SparseCodes:
        n = len(self.indptr) - 1
        if n < 0 or self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must start at 0 and end at len(indices)")
        if len(self.values) != len(self.indices):
            raise ValueError("indices and values must have the same length")
        if len(self.n_tokens) != n or len(self.truncated) != n:
            raise ValueError("n_tokens and truncated need one entry per document")
        return self

    @classmethod
    def from_rows(
        cls,
        rows: list[list[int]],
        values: list[list[float]],
        n_tokens: list[int] | None = None,
        truncated: list[bool] | None = None,
    ) -> SparseCodes:
        lengths = [len(r) for r in rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat_i = [i for r in rows for i in r]
        flat_v = [v for r in values for v in r]
        return cls(
            indptr=indptr,
            indices=np.asarray(flat_i, dtype=np.int32),
            values=np.asarray(flat_v, dtype=np.float16),
            n_tokens=np.asarray(n_tokens or [0] * len(rows), dtype=np.int32),
            truncated=np.asarray(truncated or [False] * len(rows), dtype=bool),
        )

    @classmethod
    def from_arrays(
        cls,
        indices: Sequence[np.ndarray],
        values: Sequence[np.ndarray],
        n_tokens: Sequence[int] | np.ndarray,
        truncated: Sequence[bool] | np.ndarray,
    ) -> SparseCodes:
        """One row per pair of arrays (feature ids, their values), e.g. one per document.

        >>> c = SparseCodes.from_arrays([np.array([3, 7]), np.array([], int)],
        ...                             [np.array([1.5, 0.25]), np.array([])], [12, 0], [True, False])
        >>> c.indptr.tolist(), c.row(0)[0].tolist(), c.truncated.tolist()
        ([0, 2, 2], [3, 7], [True, False])
        """
        if not indices:
            return cls._empty()
        indptr = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum([len(i) for i in indices], out=indptr[1:])
        return cls(
            indptr=indptr,
            indices=np.concatenate(indices).astype(np.int32, copy=False),
            values=np.concatenate(values).astype(np.float16, copy=False),
            n_tokens=np.asarray(n_tokens, dtype=np.int32),
            truncated=np.asarray(truncated, dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[lo:hi], self.values[lo:hi]

    def take(self, rows: Sequence[int] | np.ndarray) -> SparseCodes:
        """The given rows, in the given order (a list or an integer array).

        >>> c = SparseCodes.from_rows([[1], [2, 3], []], [[0.5], [1.0, 2.0], []])
        >>> c.take(np.array([1, 0])).indices.tolist()
        [2, 3, 1]
        """
        picked = [int(i) for i in rows]
        parts = [self.row(i) for i in picked]
        return SparseCodes.from_arrays([p[0] for p in parts], [p[1] for p in parts],
                                       self.n_tokens[picked], self.truncated[picked])

    @staticmethod
    def _empty() -> SparseCodes:
        return SparseCodes.from_rows([], [])

    @classmethod
    def concat(cls, parts: Sequence[SparseCodes]) -> SparseCodes:
        """Rows of ``parts`` one after the other.

        >>> a = SparseCodes.from_rows([[1]], [[0.5]], n_tokens=[3])
        >>> b = SparseCodes.from_rows([[], [2, 4]], [[], [1.0, 2.0]], n_tokens=[1, 2])
        >>> c = SparseCodes.concat([a, b])
        >>> c.indptr.tolist(), c.indices.tolist(), c.n_tokens.tolist()
        ([0, 1, 1, 3], [1, 2, 4], [3, 1, 2])
        """
        if not parts:
            return cls._empty()
        offsets = np.cumsum([0] + [len(p.indices) for p in parts[:-1]])
        indptr = np.concatenate(
            [np.zeros(1, dtype=np.int64)] + [p.indptr[1:] + o for p, o in zip(parts, offsets, strict=True)]
        )
        return cls(
            indptr=indptr.astype(np.int64),
            indices=np.concatenate([p.indices for p in parts]).astype(np.int32),
            values=np.concatenate([p.values for p in parts]).astype(np.float16),
            n_tokens=np.concatenate([p.n_tokens for p in parts]).astype(np.int32),
            truncated=np.concatenate([p.truncated for p in parts]).astype(bool),
        )


class FeatureBatch(BaseModel):
    """The encoder's output: events with the sparse codes of their prompt and response.

    ``encoder_id`` names the model, layer and SAE that produced the codes; state refuses to mix
    codes of different encoders.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    encoder_id: str
    d_sae: int = Field(gt=0)
    events: tuple[LLMEvent, ...]
    prompt: SparseCodes
    response: SparseCodes

    @model_validator(mode="after")
    def _check_lengths(self) -> FeatureBatch:
        if not (len(self.events) == len(self.prompt) == len(self.response)):
            raise ValueError("events, prompt codes and response codes must have equal lengths")
        return self

    def codes(self, field: TextField) -> SparseCodes:
        return self.prompt if field == "prompt" else self.response

    def take(self, rows: Sequence[int]) -> FeatureBatch:
        """The given events (and their codes), in the given order."""
        return self.model_copy(update={
            "events": tuple(self.events[i] for i in rows),
            "prompt": self.prompt.take(rows),
            "response": self.response.take(rows),
        })

    @classmethod
    def concat(cls, parts: Sequence[FeatureBatch]) -> FeatureBatch:
        """Batches of one encoder, one after the other."""
        first = parts[0]
        for part in parts[1:]:
            if (part.encoder_id, part.d_sae) != (first.encoder_id, first.d_sae):
                raise ValueError(f"cannot concatenate codes of {part.encoder_id!r} and "
                                 f"{first.encoder_id!r}")
        return cls(
            encoder_id=first.encoder_id,
            d_sae=first.d_sae,
            events=tuple(e for p in parts for e in p.events),
            prompt=SparseCodes.concat([p.prompt for p in parts]),
            response=SparseCodes.concat([p.response for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.events)


# --- diff results -------------------------------------------------------------------------------

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
    computed_at: datetime


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


# --- state queries (what export reads from state) ----------------------------------------------

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
