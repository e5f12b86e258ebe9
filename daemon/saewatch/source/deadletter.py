"""The dead-letter topic: invalid records, unchanged, with headers saying why and where from.

A dead letter has the original key and value, byte for byte, and these headers (UTF-8 values):

==========================  ===================================================================
``saewatch.error.reason``   ``invalid_json``, ``schema``, ``encoding``, ``oversize``, ``encoder``
``saewatch.error.class``    the kind of failure (``JSONDecodeError``, ``ValidationError``, ...)
``saewatch.error.message``  what was wrong, e.g. ``timestamp: Input should have timezone info``
``saewatch.source.topic``   where the record was read ...
``saewatch.source.partition``
``saewatch.source.offset``
==========================  ===================================================================

Sends are asynchronous; :meth:`DeadLetterQueue.settle` waits for the acknowledgements (``acks=all``)
and returns, per source partition, the lowest offset whose dead letter is not yet delivered. The
source never commits a partition past that offset, so an undelivered dead letter is re-read after a
restart instead of being lost.

Dead letters are therefore at-least-once: a crash after a dead letter was sent but before the
checkpoint that covers its record re-reads the record from the snapshot's offsets and sends it
again. The three ``saewatch.source.*`` headers name the source record uniquely, so a consumer of
the dead-letter topic drops the copies by them. (Kafka transactions cannot avoid the copy: the
offsets the daemon resumes from live in its snapshot on disk, outside any Kafka transaction.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata

from saewatch.models import InvalidReason, InvalidRecord, TopicPartition
from saewatch.source.exceptions import DeadLetterError
from saewatch.source.stats import SourceStats

logger = logging.getLogger(__name__)

HEADER_REASON = "saewatch.error.reason"
HEADER_CLASS = "saewatch.error.class"
HEADER_MESSAGE = "saewatch.error.message"
HEADER_TOPIC = "saewatch.source.topic"
HEADER_PARTITION = "saewatch.source.partition"
HEADER_OFFSET = "saewatch.source.offset"

ERROR_CLASSES: dict[InvalidReason, str] = {
    "invalid_json": "JSONDecodeError",
    "schema": "ValidationError",
    "encoding": "UnicodeDecodeError",
    "oversize": "MessageTooLarge",
    "encoder": "EncoderMismatch",
}


def dead_letter_headers(record: InvalidRecord) -> list[tuple[str, bytes]]:
    """The headers of ``record``'s dead letter.

    >>> from saewatch.models import SourcePosition
    >>> r = InvalidRecord(position=SourcePosition(topic="ev", partition=2, offset=9),
    ...                   reason="encoding", error="not UTF-8", raw=b"\\xff")
    >>> dict(dead_letter_headers(r))["saewatch.source.offset"]
    b'9'
    """
    pos = record.position
    return [
        (HEADER_REASON, record.reason.encode()),
        (HEADER_CLASS, ERROR_CLASSES[record.reason].encode()),
        (HEADER_MESSAGE, record.error.encode("utf-8", errors="replace")),
        (HEADER_TOPIC, pos.topic.encode()),
        (HEADER_PARTITION, str(pos.partition).encode()),
        (HEADER_OFFSET, str(pos.offset).encode()),
    ]


@dataclass
class _Pending:
    record: InvalidRecord
    future: FutureRecordMetadata | None  # None: the send itself failed; send again
    attempts: int = 1


class DeadLetterQueue:
    """Routes invalid records to ``topic`` and tracks which ones the broker has acknowledged.

    Parameters
    ----------
    producer
        A producer with ``acks="all"``; owned by the caller (not closed here).
    topic
        The dead-letter topic (``kafka.dlq_topic_name``).
    stats
        Counters to update (acknowledged dead letters, failed deliveries).
    """

    def __init__(self, producer: KafkaProducer, topic: str, stats: SourceStats) -> None:
        self.topic = topic
        self._producer = producer
        self._stats = stats
        self._pending: list[_Pending] = []

    @property
    def pending(self) -> int:
        """Dead letters sent but not yet acknowledged."""
        return len(self._pending)

    def send(self, record: InvalidRecord) -> None:
        """Send ``record``'s dead letter without waiting for the acknowledgement."""
        self._pending.append(_Pending(record, self._send(record)))

    def settle(self, timeout_s: float, backoff_s: float = 1.0) -> dict[TopicPartition, int]:
        """Wait up to ``timeout_s`` for every pending dead letter, re-sending failed ones.

        Returns
        -------
        dict[TopicPartition, int]
            For each source partition with an undelivered dead letter, its lowest source offset:
            a commit barrier. Empty when everything is acknowledged.

        Raises
        ------
        DeadLetterError
            If the broker refused a dead letter for good (e.g. larger than the dead-letter
            topic accepts); retrying cannot help, so the error must reach an operator.
        """
        deadline = time.monotonic() + timeout_s
        while self._pending:
            self._flush(deadline)
            self._pending = [p for p in self._pending if not self._resolve(p)]
            if not self._pending or time.monotonic() + backoff_s > deadline:
                break
            if any(p.future is None or p.future.failed() for p in self._pending):
                time.sleep(backoff_s)
                for p in self._pending:
                    if p.future is None or p.future.failed():
                        p.future = self._send(p.record)
                        p.attempts += 1
        barrier: dict[TopicPartition, int] = {}
        for p in self._pending:
            tp = (p.record.position.topic, p.record.position.partition)
            barrier[tp] = min(barrier.get(tp, p.record.position.offset), p.record.position.offset)
        return barrier

    def _send(self, record: InvalidRecord) -> FutureRecordMetadata | None:
        try:
            return self._producer.send(
                self.topic, value=record.raw, key=record.key, headers=dead_letter_headers(record)
            )
        except KafkaTimeoutError as exc:
            # Metadata for the topic was not available in time (broker down): retried by settle.
            logger.warning("dead letter for %s not sent yet: %s", record.position, exc)
            self._stats.dead_letter_failures += 1
            return None

    def _flush(self, deadline: float) -> None:
        try:
            self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaTimeoutError:
            logger.warning(
                "dead-letter topic %s: %d record(s) not acknowledged in time; "
                "their offsets stay uncommitted",
                self.topic,
                len(self._pending),
            )

    def _resolve(self, p: _Pending) -> bool:
        """True when ``p`` is done with (acknowledged); raises if it never can be."""
        if p.future is None or not p.future.is_done:
            return False
        if p.future.succeeded():
            self._stats.dead_letters_acked += 1
            meta = p.future.value
            logger.info(
                "dead-lettered %s (%s) -> %s[%d]@%d",
                p.record.position,
                p.record.reason,
                meta.topic,
                meta.partition,
                meta.offset,
            )
            return True
        exc = p.future.exception
        self._stats.dead_letter_failures += 1
        if isinstance(exc, KafkaError) and exc.retriable:
            logger.warning(
                "dead letter for %s failed (attempt %d), will retry: %s",
                p.record.position,
                p.attempts,
                exc,
            )
            return False
        raise DeadLetterError(
            f"the broker refused the dead letter of {p.record.position} for "
            f"{self.topic}: {exc!r}; fix the dead-letter topic (e.g. its max.message.bytes) "
            "and restart: the record is not committed and will be re-read"
        ) from exc
