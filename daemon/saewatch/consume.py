"""The ingest-only loop: poll, validate, dead-letter, commit; no encoder, no state.

It backs ``saewatch consume`` (an operator's check that events flow and are accounted for) and
the tests of the source stage; its offsets advance through the same
:class:`~saewatch.checkpoint.OffsetTracker` as the daemon's. Each batch is handled whole and committed before the stop flag is
looked at again, so SIGTERM/SIGINT (which only set the flag) end the run after the batch in hand.
The full pipeline with encoder and state is :mod:`saewatch.app`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from saewatch.checkpoint import OffsetTracker
from saewatch.models import SourceBatch, TopicPartition
from saewatch.source.base import Source

logger = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """What one :func:`ingest` run did; ``offsets`` are the last committed next-offsets."""

    batches: int = 0
    records: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    stopped_by: str = "stop flag"


def ingest(
    source: Source,
    stop: threading.Event,
    *,
    batch_size: int,
    poll_timeout_s: float,
    max_records: int | None = None,
    idle_exit_s: float | None = None,
    on_batch: Callable[[SourceBatch], None] | None = None,
) -> IngestResult:
    """Consume until ``stop`` is set, ``max_records`` are handled, the source is exhausted, or
    nothing arrived for ``idle_exit_s`` seconds.

    Every non-empty batch is passed to ``on_batch`` (if given), then its dead letters are
    flushed and its offsets committed: at-least-once.
    """
    result = IngestResult()
    tracker = OffsetTracker()
    last_data = time.monotonic()
    while not stop.is_set():
        want = batch_size if max_records is None else min(batch_size, max_records - result.records)
        batch = source.poll_batch(want, poll_timeout_s)
        if len(batch):
            if on_batch is not None:
                on_batch(batch)
            tracker.advance_batch(batch)
            result.offsets = tracker.offsets()
            source.flush()
            source.commit(result.offsets)
            result.batches += 1
            result.records += len(batch)
            last_data = time.monotonic()
        if max_records is not None and result.records >= max_records:
            result.stopped_by = f"max records ({max_records})"
            break
        if source.exhausted:
            result.stopped_by = "end of input"
            break
        if idle_exit_s is not None and time.monotonic() - last_data >= idle_exit_s:
            result.stopped_by = f"idle for {idle_exit_s:g}s"
            break
    logger.info("ingest stopped (%s) after %d records", result.stopped_by, result.records)
    return result
