"""State keys: ``(model_id, model_version, field)`` tuples and their snapshot spelling."""

from __future__ import annotations

from typing import Any

import numpy as np

from saewatch.models import FeatureBatch

StateKey = tuple[str, str, str]  # (model_id, model_version, field)
VersionKey = tuple[str, str]  # (model_id, model_version)

# Names are validated against models.events._NAME_PATTERN, which has no '|', so the join is reversible.
SEPARATOR = "|"


def key_to_str(key: tuple[str, ...]) -> str:
    return SEPARATOR.join(key)


def key_from_str(text: str) -> StateKey:
    model_id, version, field = text.split(SEPARATOR)
    return model_id, version, field


def version_from_str(text: str) -> VersionKey:
    model_id, version = text.split(SEPARATOR)
    return model_id, version


# One-slot memo: every component of one MonitorState.update asks for the same batch's groups and
# times, which cost a Python loop over the events each. The tuple is swapped atomically, and it
# holds the batch itself, so an ``is`` match can never be a recycled id().
_last: tuple[FeatureBatch, dict[VersionKey, np.ndarray], np.ndarray, dict[Any, Any]] | None = None


def _index(
    batch: FeatureBatch,
) -> tuple[dict[VersionKey, np.ndarray], np.ndarray, dict[Any, Any]]:
    global _last
    last = _last
    if last is not None and last[0] is batch:
        return last[1], last[2], last[3]
    groups: dict[VersionKey, list[int]] = {}
    for i, event in enumerate(batch.events):
        groups.setdefault((event.model_id, event.model_version), []).append(i)
    rows = {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}
    times = np.fromiter(
        (e.timestamp.timestamp() for e in batch.events), dtype=np.float64, count=len(batch)
    )
    _last = (batch, rows, times, {})
    return rows, times, _last[3]


def batch_memo(batch: FeatureBatch) -> dict[Any, Any]:
    """A scratch dict that lives as long as ``batch`` is the latest one indexed: components of
    one update share what they derive from it (bincounts, descriptor values)."""
    return _index(batch)[2]


def group_rows(batch: FeatureBatch) -> dict[VersionKey, np.ndarray]:
    """Row numbers of the batch grouped by (model_id, model_version), in first-seen order."""
    return _index(batch)[0]


def event_times(batch: FeatureBatch) -> np.ndarray:
    """Event timestamps as POSIX seconds (float64), one per row."""
    return _index(batch)[1]


def group_bincounts(
    batch: FeatureBatch, field: str, version: VersionKey
) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature fired counts and activation sums of one version's rows of ``field``.

    Memoised with the batch index: cumulative counts and every window bucket that holds the whole
    group reuse one pair of ``np.bincount`` passes.
    """
    rows, _, cache = _index(batch)
    found = cache.get((field, version))
    if found is None:
        codes = batch.prompt if field == "prompt" else batch.response
        starts, ends = codes.indptr[rows[version]], codes.indptr[rows[version] + 1]
        lengths = ends - starts
        pos = np.arange(int(lengths.sum())) + np.repeat(
            starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        idx, val = codes.indices[pos], codes.values[pos]
        found = cache[(field, version)] = (
            np.bincount(idx, minlength=batch.d_sae),
            np.bincount(idx, weights=val, minlength=batch.d_sae))
    return found
