"""State keys: ``(model_id, model_version, field)`` tuples and their snapshot spelling."""

from __future__ import annotations

import numpy as np

from saewatch.models import FeatureBatch

StateKey = tuple[str, str, str]  # (model_id, model_version, field)
VersionKey = tuple[str, str]  # (model_id, model_version)

# Names are validated against models._NAME_PATTERN, which has no '|', so the join is reversible.
SEPARATOR = "|"


def key_to_str(key: tuple[str, ...]) -> str:
    return SEPARATOR.join(key)


def key_from_str(text: str) -> StateKey:
    model_id, version, field = text.split(SEPARATOR)
    return model_id, version, field


def version_from_str(text: str) -> VersionKey:
    model_id, version = text.split(SEPARATOR)
    return model_id, version


def group_rows(batch: FeatureBatch) -> dict[VersionKey, np.ndarray]:
    """Row numbers of the batch grouped by (model_id, model_version), in first-seen order."""
    groups: dict[VersionKey, list[int]] = {}
    for i, event in enumerate(batch.events):
        groups.setdefault((event.model_id, event.model_version), []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def event_times(batch: FeatureBatch) -> np.ndarray:
    """Event timestamps as POSIX seconds (float64), one per row."""
    return np.fromiter(
        (e.timestamp.timestamp() for e in batch.events), dtype=np.float64, count=len(batch)
    )
