"""Committing offsets to the consumer group: which offsets may go, and the commit with retries.

A commit never moves a partition backwards, never passes a dead letter the broker has not
acknowledged, and skips partitions this member no longer owns (their new owner re-reads from the
last committed offset).

>>> plan_commit({("t", 0): 9, ("t", 1): 4}, barrier={("t", 0): 7}, assigned={("t", 0)},
...             committed={})
{('t', 0): 7}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from typing import Any

from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError

from saewatch.config import KafkaSettings
from saewatch.models import TopicPartition as TP
from saewatch.source.exceptions import OffsetRegressionError
from saewatch.source.stats import SourceStats

logger = logging.getLogger(__name__)

# A failed commit is retried this many times in the same call before it is left to the next one.
COMMIT_ATTEMPTS = 3


def plan_commit(
    offsets: Mapping[TP, int],
    barrier: Mapping[TP, int],
    assigned: Collection[TP],
    committed: Mapping[TP, int],
) -> dict[TP, int]:
    """The offsets to commit now: assigned partitions only, clipped to their dead-letter barrier
    (the offset of the first unacknowledged dead letter), and only where they changed.

    Raises
    ------
    OffsetRegressionError
        If an offset is lower than the one already committed for its partition.
    """
    plan: dict[TP, int] = {}
    for tp, offset in offsets.items():
        if tp not in assigned:
            logger.info(
                "not committing %s[%d]@%d: partition no longer assigned; its new owner "
                "re-reads from the last committed offset", tp[0], tp[1], offset,
            )
            continue
        if tp in barrier and barrier[tp] < offset:
            logger.warning(
                "committing %s[%d] only up to %d: its dead letter is not acknowledged yet",
                tp[0], tp[1], barrier[tp],
            )
            offset = barrier[tp]
        last = committed.get(tp)
        if last is not None and offset < last:
            raise OffsetRegressionError(
                f"commit of {tp[0]}[{tp[1]}]@{offset} is below the committed offset "
                f"{last}; pass the next offset after the last fully handled record"
            )
        if last != offset:
            plan[tp] = offset
    return plan


def commit_with_retry(
    consumer: Any, request: dict[Any, Any], kafka: KafkaSettings, stats: SourceStats
) -> bool:
    """Commit ``request`` (kafka-python TopicPartition -> OffsetAndMetadata), retrying retriable
    errors with backoff; ``False`` when it did not go through (the next commit supersedes it).
    A rebalance rejection is not retried: the partitions' new owners re-read them."""
    delay = kafka.retry_backoff_s
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            consumer.commit(request, timeout_ms=kafka.request_timeout_ms)
            return True
        except CommitFailedError as exc:
            logger.warning("commit rejected by the group coordinator (rebalance): %s", exc)
            break
        except KafkaError as exc:
            if not (exc.retriable or isinstance(exc, KafkaTimeoutError)):
                raise
            logger.warning("commit attempt %d/%d failed (%s); retrying in %.1fs",
                           attempt, COMMIT_ATTEMPTS, exc, delay)
            if attempt < COMMIT_ATTEMPTS:
                time.sleep(delay)
                delay = min(delay * 2, kafka.retry_backoff_max_s)
    stats.commit_failures += 1
    logger.warning("offsets not committed; the next commit supersedes them")
    return False
