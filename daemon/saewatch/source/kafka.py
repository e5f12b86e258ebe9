"""The Kafka source: an at-least-once consumer of LLM events with a dead-letter topic.

Delivery contract
-----------------
1. :meth:`KafkaSource.poll_batch` reads raw bytes (no deserializer), validates every record in the
   loop and returns valid and invalid records in offset order. Invalid ones are already on their
   way to the dead-letter topic, unchanged, with headers (see :mod:`saewatch.source.deadletter`).
2. The caller hands the valid records on (encoder, state) and only then calls :meth:`commit` with
   the *next* offsets to read.
3. :meth:`commit` first waits for the dead-letter acknowledgements; a partition is never committed
   past a dead letter the broker has not acknowledged (the offset is clipped to it, and the
   letter retried by the next commit). Then it commits synchronously, in the caller's thread.
4. Nothing is committed implicitly: not by a timer (``enable_auto_commit=False``), not on revoke,
   not on close. What was not committed is read again after a restart or by the partition's next
   owner: duplicates are possible, loss is not.

Rebalances
----------
kafka-python 3.x runs rebalance listeners on its IO thread, where a blocking commit raises
``RuntimeError``; the listener here never commits. On assignment it asks the ``resume`` callback
for each partition's offset (the app passes offsets from its state snapshot, the source of truth)
and seeks there, or keeps the group's committed offset when the callback returns ``None``. On
revoke (or loss) it forgets the partitions: later :meth:`commit` calls skip them, because their
records will be re-read by the new owner from the last committed offset, and committing them from
here could move the group's offset under the new owner. Records of revoked partitions already
handed out may therefore be processed twice, never skipped.

Broker outages
--------------
Connecting retries with exponential backoff (``kafka.retry_backoff_s`` up to
``kafka.retry_backoff_max_s``) until a broker answers or ``stop`` is set; polls during an outage
return empty batches while the client reconnects; failed commits are logged, counted and simply
superseded by the next commit. Nothing is committed for records that were not handled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import IllegalStateError
from kafka.structs import OffsetAndMetadata

from saewatch.config import Settings
from saewatch.models import InvalidRecord, Record, SourceBatch, SourcePosition
from saewatch.models import TopicPartition as TP
from saewatch.source.base import ResumeOffset, Source
from saewatch.source.client import consumer_options, producer_options, redact
from saewatch.source.commits import commit_with_retry, plan_commit
from saewatch.source.deadletter import DeadLetterQueue
from saewatch.source.exceptions import (
    DeadLetterError,
    SourceClosedError,
)
from saewatch.source.retry import connect_with_retry
from saewatch.source.stats import SourceStats
from saewatch.source.validate import Decoder, validate_event

logger = logging.getLogger(__name__)

# A member left without partitions this long rejoins its group (see _rejoin_if_stalled). Long
# enough for a normal rebalance (bounded by the session timeout, default 45 s) to finish.
STALL_REJOIN_S = 60.0


class KafkaSource(Source):
    """Read LLM events from ``settings.kafka.topic`` as a member of ``settings.kafka.group_id``.

    Parameters
    ----------
    settings
        The whole configuration; ``kafka.*`` and ``source.max_chars`` are used.
    resume
        Called on each partition assignment with ``(topic, partition)``; returns the offset to
        resume from, or ``None`` for the group's committed offset. Runs on the client's IO thread:
        it must be quick and must not call the source.
    topics
        Topics to subscribe to; default ``[settings.kafka.topic]``.
    stop
        Set it to abandon connecting to an unavailable broker (e.g. from a signal handler).
    connect_timeout_s
        Give up connecting after this long (``None``: keep retrying until ``stop`` is set).
    decode
        Turns a message into a record or an invalid record; default :func:`validate` (LLM
        events). ``saewatch aggregate`` passes the features-topic decoder.
    group_id, dlq_topic
        Override ``kafka.group_id`` and ``kafka.dlq_topic_name`` (the aggregator's own group and
        the features topic's dead letters).

    Attributes
    ----------
    stats : SourceStats
        Counters (consumed, valid, invalid per reason, truncated, dead letters, commits, ...).
    """

    def __init__(
        self,
        settings: Settings,
        resume: ResumeOffset | None = None,
        *,
        topics: Sequence[str] | None = None,
        stop: threading.Event | None = None,
        connect_timeout_s: float | None = None,
        decode: Decoder | None = None,
        group_id: str | None = None,
        dlq_topic: str | None = None,
    ) -> None:
        if group_id is not None or dlq_topic is not None:
            kafka = settings.kafka.model_copy(
                update={"group_id": group_id or settings.kafka.group_id,
                        "dlq_topic": dlq_topic or settings.kafka.dlq_topic_name}
            )
            settings = settings.model_copy(update={"kafka": kafka})
        self.settings = settings
        self._decode = decode or validate_event
        self.topics = list(topics or [settings.kafka.topic])
        self.stats = SourceStats()
        self._resume = resume
        self._lock = threading.Lock()  # guards the dicts below: the IO thread rebalances
        self._assigned: set[TP] = set()
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}
        self._closed = False
        self._stop = stop or threading.Event()
        kafka = settings.kafka
        copts = consumer_options(kafka, kafka.max_poll_records)
        popts = producer_options(kafka) | {"max_block_ms": kafka.request_timeout_ms}
        logger.info("connecting consumer %s", redact(copts))
        self._consumer = connect_with_retry(
            lambda: KafkaConsumer(**copts),
            kafka,
            self.stats,
            stop=self._stop,
            timeout_s=connect_timeout_s,
        )
        try:
            self._producer = connect_with_retry(
                lambda: KafkaProducer(**popts),
                kafka,
                self.stats,
                stop=self._stop,
                timeout_s=connect_timeout_s,
            )
        except BaseException:
            self._consumer.close(autocommit=False)
            raise
        self._dlq = DeadLetterQueue(self._producer, kafka.dlq_topic_name, self.stats)
        self._idle_since: float | None = None
        self._load_metadata()
        self._consumer.subscribe(topics=self.topics, listener=_Listener(self))
        logger.info(
            "subscribed to %s as group %s; dead letters go to %s",
            ",".join(self.topics),
            kafka.group_id,
            kafka.dlq_topic_name,
        )

    # --- the Source contract ----------------------------------------------------------------

    def poll_batch(self, max_records: int, timeout_s: float) -> SourceBatch:
        """Poll up to ``max_records`` records for at most ``timeout_s`` seconds and validate them.

        Invalid records are sent to the dead-letter topic before this returns (acknowledged by
        :meth:`commit`). An empty batch means nothing arrived in time (or the broker is away).
        """
        self._check_open()
        self._rejoin_if_stalled()
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        records: list[Record] = []
        invalid: list[InvalidRecord] = []
        max_chars = self.settings.source.max_chars
        max_bytes = self.settings.kafka.max_message_bytes
        for tp in sorted(polled):
            for msg in polled[tp]:
                result = self._validate(msg, max_chars, max_bytes)
                if isinstance(result, Record):
                    records.append(result)
                else:
                    invalid.append(result)
            with self._lock:
                if polled[tp] and tp in self._assigned:
                    self._next[(tp.topic, tp.partition)] = polled[tp][-1].offset + 1
        if records or invalid:
            logger.debug("polled %d valid, %d invalid records", len(records), len(invalid))
        return SourceBatch(records=tuple(records), invalid=tuple(invalid))

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit ``offsets`` (next offsets to read) once their dead letters are acknowledged.

        Partitions no longer assigned are skipped; an offset past an unacknowledged dead letter is
        clipped to that letter's offset. Runs in the caller's thread, never in a listener.

        Raises
        ------
        OffsetRegressionError
            If an offset is lower than one this source already committed for the partition.
        DeadLetterError
            If the broker refused a dead letter for good.
        """
        self._check_open()
        kafka = self.settings.kafka
        barrier = self._dlq.settle(kafka.request_timeout_ms / 1000, kafka.retry_backoff_s)
        with self._lock:
            to_commit = plan_commit(offsets, barrier, self._assigned, self._committed)
        if not to_commit:
            return
        request = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in to_commit.items()
        }
        if commit_with_retry(self._consumer, request, self.settings.kafka, self.stats):
            with self._lock:
                for tp, offset in to_commit.items():
                    if tp in self._assigned:
                        self._committed[tp] = offset
            self.stats.commits += 1
            logger.info(
                "committed %s",
                " ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(to_commit.items())),
            )

    def flush(self) -> None:
        """Block until every dead letter handed out so far is acknowledged (checkpoint step 1).

        Retries with backoff while the broker is away; gives up only when ``stop`` is set.

        Raises
        ------
        DeadLetterError
            If ``stop`` was set first, or the broker refused a dead letter for good; the
            caller must not persist or commit offsets past the undelivered records.
        """
        self._check_open()
        kafka = self.settings.kafka
        delay = kafka.retry_backoff_s
        while self._dlq.pending:
            barrier = self._dlq.settle(kafka.request_timeout_ms / 1000, kafka.retry_backoff_s)
            if not barrier:
                break
            where = " ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(barrier.items()))
            if self._stop.wait(delay):
                raise DeadLetterError(
                    f"stopped with dead letters unacknowledged from {where}; do not commit past "
                    "them (they are read again on restart)"
                )
            logger.warning("waiting for the dead-letter topic; first unacknowledged: %s", where)
            delay = min(delay * 2, kafka.retry_backoff_max_s)

    def close(self) -> None:
        """Wait (bounded) for pending dead letters, then leave the group. Commits nothing."""
        if self._closed:
            return
        self._closed = True
        kafka = self.settings.kafka
        if self._dlq.pending:
            self._dlq.settle(kafka.request_timeout_ms / 1000, kafka.retry_backoff_s)
        self._consumer.close(autocommit=False)
        self._producer.close(timeout=kafka.request_timeout_ms / 1000)
        logger.info("closed: %s", self.stats.summary())

    def assignment(self) -> frozenset[TP]:
        """Partitions currently assigned to this member."""
        with self._lock:
            return frozenset(self._assigned)

    # --- metrics ------------------------------------------------------------------------------

    def lag(self) -> dict[TP, int]:
        """Records behind the end of each assigned partition (for metrics; never blocks).

        Measured from the next offset this source will hand out (after the last polled record,
        or the last commit) to the highwater mark the broker reported in its latest fetch.
        Partitions without either number yet are left out. Call from the polling thread.
        """
        out: dict[TP, int] = {}
        for tp in sorted(self.assignment()):
            with self._lock:
                position = self._next.get(tp, self._committed.get(tp))
            try:
                highwater = self._consumer.highwater(TopicPartition(*tp))
            except IllegalStateError:  # revoked since assignment() was read
                continue
            if position is not None and highwater is not None:
                out[tp] = max(0, highwater - position)
        return out

    # --- internals ----------------------------------------------------------------------------

    def _rejoin_if_stalled(self) -> None:
        """Leave and rejoin the group after ``STALL_REJOIN_S`` without any partition.

        kafka-python 3.0 can end a rebalance with nothing assigned to anyone (an assignment
        computed without topic metadata, or revoked right after it was given) and not rebalance
        again; the member then idles for good. A fresh join makes the group assign again. With
        more members than partitions an idle member is normal: it rejoins at most once per
        interval, which costs one rebalance.
        """
        now = time.monotonic()
        with self._lock:
            idle = not self._assigned
        if not idle:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= STALL_REJOIN_S:
            logger.warning("no partitions for %.0fs: leaving and rejoining group %s",
                           now - self._idle_since, self.settings.kafka.group_id)
            self._consumer.unsubscribe()
            self._load_metadata()
            self._consumer.subscribe(topics=self.topics, listener=_Listener(self))
            self._idle_since = now
            self.stats.rebalances += 1

    def _load_metadata(self) -> None:
        """Fetch the topics' partition metadata before joining the group.

        A group leader whose metadata cache lacks a topic assigns none of its partitions
        (kafka-python logs "No partition metadata for topic") and, when no metadata change
        follows, the group keeps that empty assignment: every member idles. Seen on a loaded
        machine right after a member restarts; loading the metadata first avoids it.
        """
        for topic in self.topics:
            partitions = self._consumer.partitions_for_topic(topic)
            if not partitions:
                logger.warning("topic %s has no partitions yet (not created?); waiting for "
                               "the group to assign them once it exists", topic)

    def _validate(
        self, msg: ConsumerRecord, max_chars: int, max_bytes: int
    ) -> Record | InvalidRecord:
        position = SourcePosition(topic=msg.topic, partition=msg.partition, offset=msg.offset)
        result = self._decode(msg.value, position, max_chars, max_bytes, msg.key)
        if isinstance(result, Record):
            self.stats.count_valid(result.truncated_fields)
        else:
            self.stats.count_invalid(result.reason)
            self._dlq.send(result)
        return result

    def _check_open(self) -> None:
        if self._closed:
            raise SourceClosedError("this KafkaSource is closed; create a new one")

    def _on_assigned(self, partitions: set[TopicPartition]) -> None:
        self.stats.rebalances += 1
        for tp in sorted(partitions):
            offset = self._resume(tp.topic, tp.partition) if self._resume else None
            with self._lock:
                self._assigned.add((tp.topic, tp.partition))
                self._next.pop((tp.topic, tp.partition), None)
            if offset is not None:
                self._consumer.seek(tp, offset)
                logger.info(
                    "assigned %s[%d]: resuming at %d (snapshot)", tp.topic, tp.partition, offset
                )
            else:
                logger.info(
                    "assigned %s[%d]: resuming at the committed offset", tp.topic, tp.partition
                )

    def _on_revoked(self, partitions: set[TopicPartition], lost: bool) -> None:
        with self._lock:
            for tp in partitions:
                key = (tp.topic, tp.partition)
                self._assigned.discard(key)
                self._next.pop(key, None)
                self._committed.pop(key, None)
        if partitions:
            logger.log(
                logging.WARNING if lost else logging.INFO,
                "%s %s; records in hand from them will not be committed here",
                "lost" if lost else "revoked",
                " ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)),
            )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    """Forwards rebalance callbacks (IO thread) to the source; never blocks, never commits."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._source._on_revoked(set(revoked), lost=False)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._source._on_assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._source._on_revoked(set(lost), lost=True)
