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

from saewatch.models.codes import (
    FeatureBatch,
    SparseCodes,
)
from saewatch.models.descriptors import (
    DESCRIPTOR_NAMES,
    DESCRIPTORS,
    N_BINS,
    N_DESCRIPTORS,
    DescriptorFinding,
    DescriptorSpec,
    DescriptorStats,
    DescriptorSummary,
)
from saewatch.models.events import (
    MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS,
    TEXT_FIELDS,
    Identifier,
    LLMEvent,
    MetadataKey,
    MetadataValue,
    Name,
    SourcePosition,
    TextField,
    TopicPartition,
)
from saewatch.models.queries import (
    MAX_COOCCURRENCE_FEATURES,
    CooccurrenceCounts,
    FeatureCounts,
    FeatureDetail,
    FeatureFrequency,
    LengthStrata,
    NeighbourKind,
    NpmiNeighbour,
    NpmiPair,
    RetrievalHit,
    WindowName,
)
from saewatch.models.records import (
    InvalidReason,
    InvalidRecord,
    Record,
    SourceBatch,
)
from saewatch.models.reports import (
    BetEvidence,
    ClusterShare,
    ComparisonKey,
    ComparisonKind,
    ComparisonResult,
    DriftReport,
    EffectBasis,
    FeatureDelta,
    Snippet,
    Theme,
    Verdict,
    VersionCount,
)
from saewatch.models.windows import (
    MARK_DTYPE,
    ExampleWindow,
    Highlight,
    PeakWindow,
    TokenWindows,
)

__all__ = [
    "DESCRIPTORS",
    "DESCRIPTOR_NAMES",
    "DescriptorFinding",
    "DescriptorSpec",
    "DescriptorStats",
    "DescriptorSummary",
    "N_BINS",
    "N_DESCRIPTORS",
    "ClusterShare",
    "ComparisonKey",
    "ComparisonKind",
    "BetEvidence",
    "ComparisonResult",
    "CooccurrenceCounts",
    "DriftReport",
    "EffectBasis",
    "ExampleWindow",
    "MARK_DTYPE",
    "Highlight",
    "PeakWindow",
    "TokenWindows",
    "FeatureBatch",
    "FeatureCounts",
    "FeatureDelta",
    "FeatureDetail",
    "FeatureFrequency",
    "Identifier",
    "InvalidReason",
    "InvalidRecord",
    "LLMEvent",
    "LengthStrata",
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_KEY_CHARS",
    "MAX_COOCCURRENCE_FEATURES",
    "MAX_METADATA_VALUE_CHARS",
    "MetadataKey",
    "MetadataValue",
    "Name",
    "NeighbourKind",
    "NpmiNeighbour",
    "NpmiPair",
    "Record",
    "RetrievalHit",
    "Snippet",
    "SourceBatch",
    "SourcePosition",
    "SparseCodes",
    "TEXT_FIELDS",
    "TextField",
    "Theme",
    "TopicPartition",
    "Verdict",
    "VersionCount",
    "WindowName",
]
