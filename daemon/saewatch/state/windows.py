"""Recent windows ("last 1 h", "last 24 h") as rings of event-time buckets aligned to the epoch.

Why buckets and not exponential decay: bucket counts are integers that add up exactly, so two
replicas (or two snapshots) merge by adding bucket ``i`` to bucket ``i`` — decayed sums only merge
approximately and cannot say "how many documents in the last hour". Why event time: replaying a
topic must give the same state as consuming it live.

Each window of ``W`` seconds uses buckets of ``b = max(bucket_seconds, ceil(W /
max_buckets_per_window))`` seconds, bucket ``i`` covering ``[i*b, (i+1)*b)`` since the epoch. The
window is the ``ceil(W / b)`` buckets ending with the one that holds the watermark (the latest event
time seen), so it covers between ``W - b`` and ``W`` seconds. Older buckets are dropped; events older
than the window when they arrive only count in the cumulative totals. Memory is at most
``ceil(W / b)`` arrays of ``d_sae`` per window and key, independent of the number of events.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Self

import numpy as np

from saewatch.config import WindowSettings
from saewatch.models import TEXT_FIELDS, FeatureBatch, FeatureCounts, TextField
from saewatch.state.base import StateComponent
from saewatch.state.counts import select_rows
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

# A timestamp this far beyond the wall clock is a producer bug; it must not expire every window.
MAX_FUTURE_SKEW_S = 3_600.0

Bucket = tuple[StateKey, int]  # (key, bucket index)


class _Bucket:
    __slots__ = ("docs", "fired", "act")

    def __init__(self, d_sae: int) -> None:
        self.docs = 0
        self.fired = np.zeros(d_sae, dtype=np.int32)  # a bucket never holds 2**31 documents
        self.act = np.zeros(d_sae, dtype=np.float32)


class WindowedCounter(StateComponent):
    """Document and feature counts over recent event-time windows.

    Parameters
    ----------
    d_sae
        Number of SAE features.
    settings
        Window names, lengths and bucket sizing.

    Examples
    --------
    >>> from datetime import timedelta
    >>> from saewatch.state.testing import T0, make_batch
    >>> w = WindowedCounter(4, WindowSettings(bucket_seconds=60, windows={"5m": 300}))
    >>> w.update(make_batch([[1]], 4, times=[T0]))
    >>> w.update(make_batch([[2]], 4, times=[T0 + timedelta(hours=1)]))
    >>> c = w.counts("m", "v1", "response", "5m")
    >>> c.n_documents, c.fired.tolist()
    (1, [0, 0, 1, 0])
    """

    def __init__(self, d_sae: int, settings: WindowSettings) -> None:
        self.d_sae = d_sae
        self.settings = settings
        self._watermark = -math.inf
        self._late = 0
        self._buckets: dict[str, dict[Bucket, _Bucket]] = {w: {} for w in settings.windows}

    def bucket_seconds(self, window: str) -> int:
        length = self.settings.windows[window]
        per = math.ceil(length / self.settings.max_buckets_per_window)
        return max(self.settings.bucket_seconds, per)

    def n_buckets(self, window: str) -> int:
        return math.ceil(self.settings.windows[window] / self.bucket_seconds(window))

    @property
    def watermark(self) -> float:
        """Latest event time seen (POSIX seconds); ``-inf`` before the first event."""
        return self._watermark

    @property
    def late_documents(self) -> int:
        """Documents too old for every window when they arrived (counted cumulatively only)."""
        return self._late

    def update(self, batch: FeatureBatch) -> None:
        times = event_times(batch)
        plausible = times[times <= time.time() + MAX_FUTURE_SKEW_S]
        if len(plausible):
            self._watermark = max(self._watermark, float(plausible.max()))
        longest = max(self._buckets, key=self.settings.windows.__getitem__, default=None)
        for window in self._buckets:
            self._expire(window)
            late = self._add(window, batch, times)
            if window == longest:
                self._late += late

    def _add(self, window: str, batch: FeatureBatch, times: np.ndarray) -> int:
        """Add the batch's rows that fall into the window; return how many were too old."""
        width, oldest = self.bucket_seconds(window), self._oldest_bucket(window)
        index = np.floor(times / width).astype(np.int64)
        for (model_id, version), rows in group_rows(batch).items():
            live = rows[index[rows] >= oldest]
            for b in np.unique(index[live]):
                in_bucket = live[index[live] == b]
                whole = len(in_bucket) == len(rows)  # the usual case: reuse the group's counts
                for field in TEXT_FIELDS:
                    where = ((model_id, version, field), int(b))
                    if whole:
                        self._add_counts(window, where, len(rows),
                                         *group_bincounts(batch, field, (model_id, version)))
                    else:
                        self._add_rows(window, where, batch, field, in_bucket)
        return int((index < oldest).sum())

    def _add_rows(
        self, window: str, where: Bucket, batch: FeatureBatch, field: TextField, rows: np.ndarray
    ) -> None:
        codes = batch.codes(field)
        idx, val = select_rows(codes.indptr, codes.indices, codes.values, rows)
        self._add_counts(window, where, len(rows), np.bincount(idx, minlength=self.d_sae),
                         np.bincount(idx, weights=val, minlength=self.d_sae))

    def _add_counts(
        self, window: str, where: Bucket, docs: int, fired: np.ndarray, act: np.ndarray
    ) -> None:
        bucket = self._buckets[window].get(where)
        if bucket is None:
            bucket = self._buckets[window][where] = _Bucket(self.d_sae)
        bucket.docs += docs
        np.add(bucket.fired, fired, out=bucket.fired, casting="unsafe")
        np.add(bucket.act, act, out=bucket.act, casting="unsafe")

    def _oldest_bucket(self, window: str) -> int:
        if self._watermark == -math.inf:
            return np.iinfo(np.int64).min
        newest = math.floor(self._watermark / self.bucket_seconds(window))
        return newest - self.n_buckets(window) + 1

    def _expire(self, window: str) -> None:
        oldest = self._oldest_bucket(window)
        buckets = self._buckets[window]
        for where in [w for w in buckets if w[1] < oldest]:
            del buckets[where]

    def keys(self, window: str) -> list[StateKey]:
        self._expire(window)
        return sorted({k for k, _ in self._buckets[window]})

    def counts(
        self, model_id: str, model_version: str, field: TextField, window: str
    ) -> FeatureCounts:
        if window not in self._buckets:
            raise UnknownKeyError(f"no window {window!r}; configured: {sorted(self._buckets)}")
        self._expire(window)
        key = (model_id, model_version, field)
        parts = [b for (k, _), b in self._buckets[window].items() if k == key]
        fired = np.zeros(self.d_sae, dtype=np.int64)
        act = np.zeros(self.d_sae, dtype=np.float64)
        for part in parts:
            fired += part.fired
            act += part.act
        return FeatureCounts(
            model_id=model_id, model_version=model_version, field=field, window=window,
            n_documents=sum(p.docs for p in parts), fired=fired, activation_sum=act,
        )

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"d_sae": self.d_sae, "watermark": self._watermark,
                               "late": self._late, "windows": {}}
        for window, buckets in self._buckets.items():
            items = sorted(buckets.items())
            out["windows"][window] = {
                "keys": [key_to_str(k) for (k, _), _b in items],
                "index": np.array([i for (_k, i), _b in items], dtype=np.int64),
                "docs": np.array([b.docs for _w, b in items], dtype=np.int64),
                "fired": _stack([b.fired for _w, b in items], self.d_sae, np.int32),
                "act": _stack([b.act for _w, b in items], self.d_sae, np.float32),
            }
        return out

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(int(snapshot["d_sae"]), self.settings)  # type: ignore[misc]
        self._watermark, self._late = float(snapshot["watermark"]), int(snapshot["late"])
        for window, data in snapshot["windows"].items():
            if window not in self._buckets:
                logger.warning("snapshot window %r is no longer configured; dropped", window)
                continue
            for i, name in enumerate(data["keys"]):
                bucket = _Bucket(self.d_sae)
                bucket.docs = int(data["docs"][i])
                bucket.fired[:] = data["fired"][i]
                bucket.act[:] = data["act"][i]
                self._buckets[window][(key_from_str(name), int(data["index"][i]))] = bucket

    def merge(self, other: Self) -> None:
        if other.d_sae != self.d_sae or other.settings != self.settings:
            raise IncompatibleStateError("windows differ in d_sae or settings: cannot merge")
        self._watermark = max(self._watermark, other._watermark)
        self._late += other._late
        for window, buckets in other._buckets.items():
            mine = self._buckets[window]
            for where, bucket in buckets.items():
                target = mine.get(where) or mine.setdefault(where, _Bucket(self.d_sae))
                target.docs += bucket.docs
                target.fired += bucket.fired
                target.act += bucket.act
            self._expire(window)


def _stack(arrays: list[np.ndarray], d: int, dtype: type) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros((0, d), dtype=dtype)
