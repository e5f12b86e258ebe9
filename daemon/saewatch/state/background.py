"""The last events' full codes per field: the background a new behaviour is fitted against.

The retrieval ring keeps only each event's strongest features, which is enough to find events
but not to tell how rare a feature is; a behaviour's features must be rare in *all* codes. So
the last :data:`BACKGROUND_EVENTS` events' codes are kept whole per field (~1-2 MiB at d_sae
4,096 with presence thresholds: ~145 features of 6 bytes per response).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Self

import numpy as np

from saewatch.models import N_DESCRIPTORS, TEXT_FIELDS, FeatureBatch, SparseCodes, TextField
from saewatch.state.base import StateComponent
from saewatch.state.descriptor_counts import descriptor_values
from saewatch.state.keys import event_times

BACKGROUND_EVENTS = 2_048  # enough to see a 0.3% background rate ~6 times

# (event time, event id, feature ids, descriptor values; NaN where restored from a snapshot
# written before they were kept)
_Row = tuple[float, str, np.ndarray, np.ndarray]


class BackgroundCodes(StateComponent):
    """A bounded FIFO of recent events' feature ids per field.

    >>> from saewatch.state.testing import make_batch
    >>> bg = BackgroundCodes(capacity=2)
    >>> bg.update(make_batch([[1], [2, 3], [4]], d_sae=8))
    >>> c = bg.codes("response")
    >>> len(c), c.indices.tolist()
    (2, [2, 3, 4])
    """

    def __init__(self, capacity: int = BACKGROUND_EVENTS) -> None:
        self.capacity = capacity
        self._rows: dict[TextField, deque[_Row]] = {f: deque(maxlen=capacity)
                                                    for f in TEXT_FIELDS}

    def update(self, batch: FeatureBatch) -> None:
        times = event_times(batch)
        for field in TEXT_FIELDS:
            codes = batch.codes(field)
            values = descriptor_values(batch, field).astype(np.float32)
            start = max(0, len(batch) - self.capacity)
            for i in range(start, len(batch)):
                self._rows[field].append((float(times[i]), batch.events[i].event_id,
                                          codes.row(i)[0].astype(np.int32), values[i]))

    def codes(self, field: TextField) -> SparseCodes:
        """The kept events' codes of ``field`` (values 1: presence is what fitting reads)."""
        rows = self._rows[field]
        if not rows:
            return SparseCodes.from_rows([], [])
        ids = [r[2] for r in rows]
        return SparseCodes.from_arrays(ids, [np.ones(len(i), np.float16) for i in ids],
                                       [0] * len(ids), [False] * len(ids))

    def descriptors(self, field: TextField) -> np.ndarray:
        """Descriptor values ``[events, N_DESCRIPTORS]`` in the order of :meth:`codes`."""
        rows = self._rows[field]
        if not rows:
            return np.zeros((0, N_DESCRIPTORS), dtype=np.float32)
        return np.stack([r[3] for r in rows])

    def event_ids(self, field: TextField) -> list[str]:
        """The ids of the kept events of ``field``, in the order of :meth:`codes`."""
        return [r[1] for r in self._rows[field]]

    def __len__(self) -> int:
        return len(self._rows["response"])

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"capacity": self.capacity}
        for field in TEXT_FIELDS:
            rows = list(self._rows[field])
            out[field] = {
                "times": np.asarray([r[0] for r in rows], dtype=np.float64),
                "event_ids": [r[1] for r in rows],
                "indptr": np.cumsum([0] + [len(r[2]) for r in rows]).astype(np.int64),
                "indices": (np.concatenate([r[2] for r in rows]).astype(np.int32) if rows
                            else np.zeros(0, np.int32)),
                "descriptors": (np.stack([r[3] for r in rows]) if rows
                                else np.zeros((0, N_DESCRIPTORS), np.float32)),
            }
        return out

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.capacity = int(snapshot["capacity"])
        for field in TEXT_FIELDS:
            part = snapshot[field]
            ptr, ids = np.asarray(part["indptr"]), np.asarray(part["indices"])
            n = len(part["times"])
            values = (np.asarray(part["descriptors"], dtype=np.float32) if "descriptors" in part
                      else np.full((n, N_DESCRIPTORS), np.nan, dtype=np.float32))
            self._rows[field] = deque(
                ((float(t), str(part["event_ids"][i]), ids[ptr[i]:ptr[i + 1]].copy(), values[i])
                 for i, t in enumerate(part["times"])),
                maxlen=self.capacity)

    def merge(self, other: Self) -> None:
        """Keep the latest ``capacity`` events of both, by event time."""
        for field in TEXT_FIELDS:
            both = sorted([*self._rows[field], *other._rows[field]], key=lambda r: r[0])
            self._rows[field] = deque(both[-self.capacity:], maxlen=self.capacity)
