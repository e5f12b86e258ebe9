"""Drop events already counted: a bounded memory of the most recent event ids.

Replays are what at-least-once delivery produces: an encoder that crashed between publishing
codes and committing its input offsets publishes them again, and an upstream producer may retry.
Events carry a unique ``event_id``, so the state remembers the last ``capacity`` ids (persisted in
every snapshot, hence consistent with the snapshot's offsets) and skips an event it has seen.
:class:`~saewatch.state.monitor.MonitorState` tallies the skipped events (``tally.duplicates``,
persisted too), and the app exports them as ``saewatch_events_duplicate_total``.

The horizon must exceed the longest replay: at most ``max_poll_records`` per encoder partition,
plus whatever upstream retries; the default (200,000 ids, ~20 MB) leaves a wide margin.

>>> from saewatch.state.testing import make_batch
>>> seen = RecentEvents(capacity=3)
>>> first = seen.fresh(make_batch([[1], [2]], d_sae=4))
>>> len(first), len(seen.fresh(make_batch([[1], [2], [3]], d_sae=4)))
(2, 1)
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Self

import numpy as np

from saewatch.models import FeatureBatch
from saewatch.state.base import StateComponent

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 200_000


class RecentEvents(StateComponent):
    """The ``capacity`` most recently counted event ids (oldest forgotten first).

    Parameters
    ----------
    capacity
        How many ids to remember; the deduplication horizon.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def fresh(self, batch: FeatureBatch) -> FeatureBatch:
        """The events of ``batch`` not counted before (nor earlier in the batch); remembers them."""
        keep: list[int] = []
        for i, event in enumerate(batch.events):
            if event.event_id in self._ids:
                continue
            self._remember(event.event_id)
            keep.append(i)
        skipped = len(batch) - len(keep)
        if skipped:
            logger.info("skipped %d already counted events", skipped)
        return batch if skipped == 0 else batch.take(keep)

    def update(self, batch: FeatureBatch) -> None:
        for event in batch.events:
            self._remember(event.event_id)

    def _remember(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def snapshot(self) -> dict[str, Any]:
        # A fixed-width unicode array: stored without pickle by the snapshot store.
        return {"capacity": self.capacity, "ids": np.array(list(self._ids), dtype=np.str_)}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.capacity = int(snapshot["capacity"])
        self._ids = OrderedDict((str(i), None) for i in snapshot["ids"].tolist())

    def merge(self, other: Self) -> None:
        """Union, ``other``'s ids counted as the more recent ones."""
        for event_id in other._ids:
            self._ids.pop(event_id, None)
            self._remember(event_id)
