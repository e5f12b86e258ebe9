"""Cumulative per-(model_id, model_version, field) document and feature counts.

The hot path is vectorised: a whole batch's CSR indices go through ``np.bincount`` at once, so the
cost per event is a few array operations regardless of ``d_sae``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Self

import numpy as np

from saewatch.models import TEXT_FIELDS, FeatureBatch, FeatureCounts, TextField, VersionCount
from saewatch.state.base import StateComponent
from saewatch.state.exceptions import IncompatibleStateError, UnknownKeyError
from saewatch.state.keys import (
    StateKey,
    event_times,
    group_bincounts,
    group_rows,
    key_from_str,
    key_to_str,
)

logger = logging.getLogger(__name__)


class FeatureCounter(StateComponent):
    """Documents, per-feature fired counts and activation sums per (model, version, field).

    Parameters
    ----------
    d_sae
        Number of SAE features (length of every count array).

    Examples
    --------
    >>> from saewatch.models import SparseCodes
    >>> from saewatch.state.testing import make_batch
    >>> counter = FeatureCounter(d_sae=4)
    >>> counter.update(make_batch([[0, 2], [2]], d_sae=4, version="v1"))
    >>> c = counter.counts("m", "v1", "response")
    >>> c.n_documents, c.fired.tolist()
    (2, [1, 0, 2, 0])
    """

    def __init__(self, d_sae: int) -> None:
        self.d_sae = d_sae
        self._docs: dict[StateKey, int] = {}
        self._fired: dict[StateKey, np.ndarray] = {}
        self._act: dict[StateKey, np.ndarray] = {}
        self._first: dict[StateKey, float] = {}
        self._last: dict[StateKey, float] = {}

    def _ensure(self, key: StateKey) -> None:
        if key not in self._docs:
            self._docs[key] = 0
            self._fired[key] = np.zeros(self.d_sae, dtype=np.int64)
            self._act[key] = np.zeros(self.d_sae, dtype=np.float64)

    def update(self, batch: FeatureBatch) -> None:
        times = event_times(batch)
        for (model_id, version), rows in group_rows(batch).items():
            lo, hi = float(times[rows].min()), float(times[rows].max())
            for field in TEXT_FIELDS:
                key = (model_id, version, field)
                self._ensure(key)
                fired, act = group_bincounts(batch, field, (model_id, version))
                self._docs[key] += len(rows)
                self._fired[key] += fired
                self._act[key] += act
                self._first[key] = min(self._first.get(key, lo), lo)
                self._last[key] = max(self._last.get(key, hi), hi)

    def keys(self) -> list[StateKey]:
        return sorted(self._docs)

    def counts(self, model_id: str, model_version: str, field: TextField) -> FeatureCounts:
        key = (model_id, model_version, field)
        if key not in self._docs:
            raise UnknownKeyError(f"no documents for {key_to_str(key)}; see version_counts()")
        return FeatureCounts(
            model_id=model_id, model_version=model_version, field=field, window="all",
            n_documents=self._docs[key], fired=self._fired[key].copy(),
            activation_sum=self._act[key].copy(),
        )

    def version_counts(self) -> list[VersionCount]:
        return [
            VersionCount(
                model_id=k[0], model_version=k[1], field=k[2],
                documents=self._docs[k],
                first_seen=_dt(self._first.get(k)), last_seen=_dt(self._last.get(k)),
            )
            for k in self.keys()
        ]

    def snapshot(self) -> dict[str, Any]:
        keys = self.keys()
        return {
            "d_sae": self.d_sae,
            "keys": [key_to_str(k) for k in keys],
            "docs": np.array([self._docs[k] for k in keys], dtype=np.int64),
            "first": np.array([self._first.get(k, np.nan) for k in keys], dtype=np.float64),
            "last": np.array([self._last.get(k, np.nan) for k in keys], dtype=np.float64),
            "fired": _stack([self._fired[k] for k in keys], self.d_sae, np.int64),
            "act": _stack([self._act[k] for k in keys], self.d_sae, np.float64),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(int(snapshot["d_sae"]))  # type: ignore[misc]
        for i, name in enumerate(snapshot["keys"]):
            key = key_from_str(name)
            self._docs[key] = int(snapshot["docs"][i])
            self._fired[key] = np.array(snapshot["fired"][i], dtype=np.int64)
            self._act[key] = np.array(snapshot["act"][i], dtype=np.float64)
            if not np.isnan(snapshot["first"][i]):
                self._first[key] = float(snapshot["first"][i])
                self._last[key] = float(snapshot["last"][i])

    def merge(self, other: Self) -> None:
        if other.d_sae != self.d_sae:
            raise IncompatibleStateError(f"d_sae {other.d_sae} != {self.d_sae}: cannot merge")
        for key in other.keys():
            self._ensure(key)
            self._docs[key] += other._docs[key]
            self._fired[key] += other._fired[key]
            self._act[key] += other._act[key]
            if key in other._first:
                self._first[key] = min(self._first.get(key, np.inf), other._first[key])
                self._last[key] = max(self._last.get(key, -np.inf), other._last[key])


def select_rows(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the CSR entries of ``rows`` (vectorised gather, no per-row Python loop)."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    pos = np.arange(total) + offsets
    return indices[pos], values[pos]  # np.bincount casts (int32 ids, float16 activations)


def _stack(arrays: list[np.ndarray], d: int, dtype: type) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros((0, d), dtype=dtype)


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)
