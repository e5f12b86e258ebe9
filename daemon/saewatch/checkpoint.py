"""Checkpoints: the state snapshot and the source offsets it reflects, persisted together.

The snapshot is the source of truth for offsets; Kafka commits follow it. See
:meth:`Checkpointer.checkpoint` for the order of the steps and why it is safe.

>>> t = OffsetTracker()
>>> t.advance(("events", 0), 10); t.advance(("events", 1), 3); t.advance(("events", 0), 12)
>>> t.offsets()
{('events', 0): 12, ('events', 1): 3}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from saewatch.errors import OffsetRegressionError
from saewatch.models import SourceBatch, SourcePosition, TopicPartition

logger = logging.getLogger(__name__)


class _Snapshotting(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


class _Store(Protocol):
    def save(self, state: dict[str, Any], offsets: Mapping[TopicPartition, int]) -> Path: ...


class _Committing(Protocol):
    def flush(self) -> None: ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...


class OffsetTracker:
    """Next offset to read per partition, for everything already folded into state."""

    def __init__(self, initial: Mapping[TopicPartition, int] | None = None) -> None:
        self._next: dict[TopicPartition, int] = dict(initial or {})

    def advance(self, tp: TopicPartition, next_offset: int) -> None:
        if next_offset < self._next.get(tp, 0):
            raise OffsetRegressionError(
                f"{tp[0]}[{tp[1]}]: next offset {next_offset} is behind {self._next[tp]}"
            )
        self._next[tp] = next_offset

    def next(self, topic: str, partition: int) -> int | None:
        """The next offset to read of a partition (the source's resume callback).

        Called from the Kafka client's IO thread on (re)assignment: a single dict read, atomic
        in CPython, so no lock against the polling thread's writes.
        """
        return self._next.get((topic, partition))

    def fresh(self, batch: SourceBatch) -> SourceBatch:
        """``batch`` without the records already handled.

        After a rebalance hands a partition back while a batch was in hand, the source seeks to
        :meth:`next` as it was, and re-delivers what that batch then folded in; those records
        are dropped here (the offsets, not the ids, are the truth).
        """
        def new(position: SourcePosition) -> bool:
            return position.offset >= self._next.get((position.topic, position.partition), 0)

        records = tuple(r for r in batch.records if new(r.position))
        invalid = tuple(r for r in batch.invalid if new(r.position))
        skipped = len(batch) - len(records) - len(invalid)
        if skipped == 0:
            return batch
        logger.info("skipped %d records re-delivered after a rebalance", skipped)
        return SourceBatch(records=records, invalid=invalid)

    def advance_batch(self, batch: SourceBatch) -> None:
        """Record that every record of ``batch`` (valid or invalid) has been handled."""
        positions = [r.position for r in batch.records] + [r.position for r in batch.invalid]
        for pos in sorted(positions, key=lambda p: (p.topic, p.partition, p.offset)):
            self.advance((pos.topic, pos.partition), pos.offset + 1)

    def offsets(self) -> dict[TopicPartition, int]:
        return dict(self._next)


class Checkpointer:
    """Writes checkpoints every ``interval_s`` seconds, or when forced.

    Parameters
    ----------
    state, store, source
        What to snapshot, where to write it, and whom to tell the offsets.
    tracker
        The offsets that the state reflects.
    interval_s
        Minimum time between two unforced checkpoints.
    on_written
        Called with the duration after each checkpoint (metrics).
    """

    def __init__(
        self,
        state: _Snapshotting,
        store: _Store,
        source: _Committing,
        tracker: OffsetTracker,
        interval_s: float,
        on_written: Callable[[float], None] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._state = state
        self._store = store
        self._source = source
        self._tracker = tracker
        self._on_written = on_written
        self._last = time.monotonic()
        self._written = 0
        self._saved: dict[TopicPartition, int] | None = None

    @property
    def written(self) -> int:
        return self._written

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    def maybe_checkpoint(self) -> None:
        """Checkpoint when due and something was handled since the last one (offsets moved)."""
        if self.due() and self._tracker.offsets() != self._saved:
            self.checkpoint()

    def checkpoint(self) -> Path:
        """Persist state and offsets, then commit the offsets.

        Steps, in this order:

        1. flush the source's dead-letter producer, so every invalid record before the offsets
           has been acknowledged by the broker (a crash after step 2 must not lose a dead letter);
        2. write the state snapshot together with the next offset of every partition, atomically
           (the store writes a temp file, fsyncs, renames, fsyncs the directory);
        3. commit the same offsets to the consumer group. This is advisory: on restart the app
           seeks to the snapshot's offsets, so a crash between 2 and 3 re-reads nothing twice;
        4. note the time for the next ``due()`` and report the duration.

        A crash before step 2 completes leaves the previous snapshot in force: the events since
        are read again and counted for the first time. Hence exactly-once state updates.
        """
        started = time.monotonic()
        self._source.flush()
        offsets = self._tracker.offsets()
        path = self._store.save(self._state.snapshot(), offsets)
        self._saved = offsets
        self._source.commit(offsets)
        self._last = time.monotonic()
        self._written += 1
        elapsed = self._last - started
        logger.info("checkpoint %s written in %.3fs (%d partitions)", path, elapsed, len(offsets))
        if self._on_written is not None:
            self._on_written(elapsed)
        return path
