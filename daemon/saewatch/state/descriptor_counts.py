"""``DescriptorCounter``: histograms of the text descriptors, cumulative and per recent window.

Per (model_id, model_version, field) it keeps one ``int64[N_DESCRIPTORS, N_BINS]`` histogram
and the exact sums of the values (``models/descriptors.py`` fixes the buckets), cumulatively and
in the same epoch-aligned event-time buckets as :mod:`saewatch.state.windows` (same bucket width,
same watermark rule), so a descriptor's window holds the documents the features' window holds.
Everything is a count or a sum: merge adds bucket by bucket, exactly. Memory: ~11 KiB per key
cumulatively and per live window bucket, independent of the number of events.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Self

import numpy as np

from saewatch.config import WindowSettings
from saewatch.models import (
    N_BINS,
    N_DESCRIPTORS,
    TEXT_FIELDS,
    DescriptorStats,
    FeatureBatch,
    TextField,
)
from saewatch.models.descriptors import EDGES
from saewatch.state.base import StateComponent
from saewatch.state.descriptors import extract_descriptors
from saewatch.state.exceptions import IncompatibleStateError, UnknownKeyError
from saewatch.state.keys import (
    StateKey,
    batch_memo,
    event_times,
    group_rows,
    key_from_str,
    key_to_str,
)
from saewatch.state.windows import MAX_FUTURE_SKEW_S

logger = logging.getLogger(__name__)

_FLAT = np.arange(N_DESCRIPTORS) * N_BINS  # offset of each descriptor's row in a flat histogram


class _Hist:
    __slots__ = ("docs", "hist", "sums")

    def __init__(self) -> None:
        self.docs = 0
        self.hist = np.zeros((N_DESCRIPTORS, N_BINS), dtype=np.int64)
        self.sums = np.zeros(N_DESCRIPTORS, dtype=np.float64)

    def add(self, docs: int, hist: np.ndarray, sums: np.ndarray) -> None:
        self.docs += docs
        self.hist += hist
        self.sums += sums


def descriptor_values(batch: FeatureBatch, field: TextField) -> np.ndarray:
    """Descriptor values ``[len(batch), N_DESCRIPTORS]`` of ``field``, extracted once per batch
    (the histograms and the betting test both read them)."""
    memo = batch_memo(batch)
    found = memo.get(("descriptors", field))
    if found is None:
        texts = [e.prompt if field == "prompt" else e.response for e in batch.events]
        found = memo[("descriptors", field)] = extract_descriptors(texts,
                                                                   batch.codes(field).n_tokens)
    values: np.ndarray = found
    return values


def bin_values(values: np.ndarray) -> np.ndarray:
    """Flat bucket numbers (``descriptor * N_BINS + bucket``) of ``values [n, N_DESCRIPTORS]``.

    >>> from saewatch.models import DESCRIPTOR_NAMES
    >>> v = np.zeros((1, N_DESCRIPTORS)); v[0, 0] = 3; v[0, -1] = 0.5
    >>> (bin_values(v)[0, [0, -1]] - _FLAT[[0, -1]]).tolist()
    [3, 21]
    """
    bins = np.empty(values.shape, dtype=np.int64)
    for d in range(N_DESCRIPTORS):
        bins[:, d] = np.searchsorted(EDGES[d], values[:, d], side="right") - 1
    np.clip(bins, 0, N_BINS - 1, out=bins)
    out: np.ndarray = bins + _FLAT
    return out


class DescriptorCounter(StateComponent):
    """Descriptor histograms per (model_id, version, field): cumulative and per window.

    Parameters
    ----------
    settings
        Window names, lengths and bucket sizing (those of the feature windows).

    Examples
    --------
    >>> from saewatch.state.testing import make_batch
    >>> counter = DescriptorCounter(WindowSettings(windows={"1h": 3600}))
    >>> counter.update(make_batch([[1], [2]], d_sae=4, texts=["One two three.", "Hi?"]))
    >>> s = counter.stats("m", "v1", "response")
    >>> s.n_documents, s.median("words"), s.mean("question_marks")
    (2, 2.0, 0.5)
    >>> counter.stats("m", "v1", "response", "1h").n_documents
    2
    """

    def __init__(self, settings: WindowSettings) -> None:
        self.settings = settings
        self._watermark = -math.inf
        self._all: dict[StateKey, _Hist] = {}
        self._buckets: dict[str, dict[tuple[StateKey, int], _Hist]] = {
            w: {} for w in settings.windows}

    # Same sizing as WindowedCounter.bucket_seconds / n_buckets (saewatch.state.windows).
    def _width(self, window: str) -> int:
        length = self.settings.windows[window]
        return max(self.settings.bucket_seconds,
                   math.ceil(length / self.settings.max_buckets_per_window))

    def _oldest(self, window: str) -> int:
        if self._watermark == -math.inf:
            return int(np.iinfo(np.int64).min)
        width = self._width(window)
        return math.floor(self._watermark / width) - math.ceil(
            self.settings.windows[window] / width) + 1

    def _expire(self, window: str) -> None:
        oldest = self._oldest(window)
        buckets = self._buckets[window]
        for where in [w for w in buckets if w[1] < oldest]:
            del buckets[where]

    def update(self, batch: FeatureBatch) -> None:
        times = event_times(batch)
        plausible = times[times <= time.time() + MAX_FUTURE_SKEW_S]
        if len(plausible):
            self._watermark = max(self._watermark, float(plausible.max()))
        groups = group_rows(batch)
        for field in TEXT_FIELDS:
            values = descriptor_values(batch, field)
            bins = bin_values(values)
            for (model_id, version), rows in groups.items():
                key = (model_id, version, field)
                self._all.setdefault(key, _Hist()).add(len(rows), *_fold(bins, values, rows))
                self._add_windows(key, bins, values, rows, times)
        for window in self._buckets:
            self._expire(window)

    def _add_windows(self, key: StateKey, bins: np.ndarray, values: np.ndarray,
                     rows: np.ndarray, times: np.ndarray) -> None:
        for window, buckets in self._buckets.items():
            index = np.floor(times[rows] / self._width(window)).astype(np.int64)
            live = index >= self._oldest(window)
            for b in np.unique(index[live]):
                chosen = rows[live & (index == b)]
                buckets.setdefault((key, int(b)), _Hist()).add(
                    len(chosen), *_fold(bins, values, chosen))

    def keys(self) -> list[StateKey]:
        return sorted(self._all)

    def stats(self, model_id: str, model_version: str, field: TextField,
              window: str = "all") -> DescriptorStats:
        """Histograms and sums of one key over ``window`` (``"all"``: cumulative)."""
        key = (model_id, model_version, field)
        if window == "all":
            if key not in self._all:
                raise UnknownKeyError(f"no documents for {key_to_str(key)}")
            parts = [self._all[key]]
        elif window in self._buckets:
            self._expire(window)
            parts = [h for (k, _), h in self._buckets[window].items() if k == key]
        else:
            raise UnknownKeyError(f"no window {window!r}; configured: {sorted(self._buckets)}")
        total = _Hist()
        for part in parts:
            total.add(part.docs, part.hist, part.sums)
        return DescriptorStats(model_id=model_id, model_version=model_version, field=field,
                               window=window, n_documents=total.docs, hist=total.hist,
                               sums=total.sums)

    def snapshot(self) -> dict[str, Any]:
        def table(items: list[tuple[str, int, _Hist]]) -> dict[str, Any]:
            return {
                "keys": [k for k, _i, _h in items],
                "index": np.array([i for _k, i, _h in items], dtype=np.int64),
                "docs": np.array([h.docs for _k, _i, h in items], dtype=np.int64),
                "hist": np.stack([h.hist for _k, _i, h in items]) if items
                else np.zeros((0, N_DESCRIPTORS, N_BINS), dtype=np.int64),
                "sums": np.stack([h.sums for _k, _i, h in items]) if items
                else np.zeros((0, N_DESCRIPTORS), dtype=np.float64),
            }

        return {
            "n_bins": N_BINS, "descriptors": N_DESCRIPTORS, "watermark": self._watermark,
            "all": table([(key_to_str(k), 0, self._all[k]) for k in self.keys()]),
            "windows": {w: table([(key_to_str(k), i, h) for (k, i), h in sorted(b.items())])
                        for w, b in self._buckets.items()},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(self.settings)  # type: ignore[misc]
        if (int(snapshot["n_bins"]), int(snapshot["descriptors"])) != (N_BINS, N_DESCRIPTORS):
            # Another descriptor layout: its buckets mean other things. Start afresh (features
            # are unaffected) rather than mix them.
            logger.warning("snapshot descriptors have another layout; descriptor counts restart")
            return
        self._watermark = float(snapshot["watermark"])
        for key, _i, h in _rows(snapshot["all"]):
            self._all[key] = h
        for window, data in snapshot["windows"].items():
            if window not in self._buckets:
                logger.warning("snapshot window %r is no longer configured; dropped", window)
                continue
            for key, i, h in _rows(data):
                self._buckets[window][(key, i)] = h

    def merge(self, other: Self) -> None:
        if other.settings != self.settings:
            raise IncompatibleStateError("descriptor windows differ in settings: cannot merge")
        self._watermark = max(self._watermark, other._watermark)
        for key, h in other._all.items():
            self._all.setdefault(key, _Hist()).add(h.docs, h.hist, h.sums)
        for window, buckets in other._buckets.items():
            for where, h in buckets.items():
                self._buckets[window].setdefault(where, _Hist()).add(h.docs, h.hist, h.sums)
            self._expire(window)


def _fold(bins: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histogram and sums of ``rows`` (one bincount over the flat bucket numbers)."""
    hist = np.bincount(bins[rows].ravel(), minlength=N_DESCRIPTORS * N_BINS)
    return hist.reshape(N_DESCRIPTORS, N_BINS), values[rows].sum(axis=0)


def _rows(data: dict[str, Any]) -> list[tuple[StateKey, int, _Hist]]:
    out = []
    for j, name in enumerate(data["keys"]):
        h = _Hist()
        h.docs = int(data["docs"][j])
        h.hist[:] = data["hist"][j]
        h.sums[:] = data["sums"][j]
        out.append((key_from_str(name), int(data["index"][j]), h))
    return out
