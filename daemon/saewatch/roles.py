"""``saewatch encode``: the stateless, scaled-out half of the daemon.

Each replica is a member of the events topic's consumer group. It encodes what it polls and
publishes one features message per event (:mod:`saewatch.codec`) to the features topic, keyed by
model_id. ``saewatch aggregate`` (:class:`saewatch.app.App` with ``role="aggregate"``) reads them.

Delivery: a replica commits its input offsets only after the broker acknowledged every features
message of the batch (``acks=all``, idempotent producer) and every dead letter. A crash between
the two re-encodes the uncommitted records and publishes them again; the aggregator drops these
replays by event id (:class:`saewatch.state.dedup.RecentEvents`), so its state counts each event
exactly once (and ``saewatch_events_duplicate_total`` of the aggregator counts the replays). An
event whose features message would exceed ``kafka.max_message_bytes`` (the broker would refuse it
for good, and the replica would stop on it after every restart) goes to the events' dead-letter
topic with reason ``oversize`` instead, counted as invalid.

Metrics: the daemon's own functions publish model info, SAE sanity, GPU memory, partitions and
lag. In one replica ``events_consumed = events_processed + events_invalid`` (an encoder keeps no
state, so it drops no duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from saewatch.checkpoint import OffsetTracker
from saewatch.codec import encode_messages
from saewatch.config import Settings
from saewatch.encode.base import Encoder, PendingCodes
from saewatch.errors import PublishError
from saewatch.export.base import ReportHolder
from saewatch.export.metrics import PipelineMetrics
from saewatch.models import InvalidRecord, Record, SourceBatch
from saewatch.runtime import (
    Readiness,
    SourceFactory,
    StopFlag,
    count_polled,
    default_encoder,
    finish_timed,
    report_encoder,
    report_model,
    report_source,
)
from saewatch.source.base import ResumeOffset, Source
from saewatch.source.deadletter import dead_letter_headers
from saewatch.source.exceptions import SourceClosedError

logger = logging.getLogger(__name__)

# How long to wait for the broker to acknowledge one batch of features messages.
PUBLISH_TIMEOUT_S = 60.0


class EncodeWorker:
    """Consume LLM events, encode them, publish their codes, then commit.

    Parameters
    ----------
    settings
        ``kafka.topic`` is read, ``kafka.features_topic`` written.
    encoder_factory, source_factory, producer_factory
        Injected by tests; default from ``settings``.
    registry
        Where the worker's metrics register.
    max_events
        Stop after this many records (testing).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        encoder_factory: Callable[[], Encoder] | None = None,
        source_factory: SourceFactory | None = None,
        producer_factory: Callable[[], KafkaProducer] | None = None,
        registry: CollectorRegistry | None = None,
        max_events: int | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.readiness = Readiness(state_restored=True)  # stateless: nothing to restore
        self.stop_flag = StopFlag()
        self.max_events = max_events
        self.handled = 0
        self.published = 0
        self._encoder_factory = encoder_factory or default_encoder(settings)
        self._source_factory = source_factory or _default_source(settings)
        self._producer_factory = producer_factory or _default_producer(settings,
                                                                       self.stop_flag.event)

    def stop(self) -> None:
        self.stop_flag.event.set()

    def run(self) -> int:
        with ExitStack() as stack:
            stack.enter_context(self.stop_flag.installed())
            self._start_http(stack)
            encoder = self._encoder_factory()
            stack.callback(encoder.close)
            self.readiness.model_loaded = True
            report_model(self.metrics, encoder)
            try:
                producer = self._producer_factory()
                stack.callback(producer.close)
                source = stack.enter_context(
                    self._source_factory(_no_resume, self.stop_flag.event))
            except SourceClosedError as exc:  # a signal while the broker was away: a clean stop
                if not self.stop_flag.explains(exc):
                    raise
                return 0
            self.readiness.source = source
            self._loop(source, encoder, producer)
        logger.info("stopped after %d records, %d published", self.handled, self.published)
        return 0

    def _loop(self, source: Source, encoder: Encoder, producer: KafkaProducer) -> None:
        src = self.settings.source
        next_report = time.monotonic()
        # As in the daemon (App._loop): an encoder that works ahead gets the next full poll
        # begun before the current one is finished and published; what is in hand is not
        # committed until published, so a crash meanwhile re-reads it.
        in_hand: tuple[SourceBatch, PendingCodes | None] | None = None
        while not self.stop_flag.event.is_set():
            batch = source.poll_batch(src.batch_size, src.poll_timeout_s)
            begun = self._begin(batch, encoder) if len(batch) else None
            if in_hand is not None:
                self._finish(*in_hand, source, producer)
                in_hand = None
            if begun is not None:
                if encoder.looks_ahead and len(batch) >= src.batch_size:
                    in_hand = begun
                else:
                    self._finish(*begun, source, producer)
            if time.monotonic() >= next_report:  # the daemon's cadence, idle polls included
                report_source(self.metrics, source)
                report_encoder(self.metrics, encoder)
                next_report = time.monotonic() + self.settings.diff.interval_s
            pending = 0 if in_hand is None else len(in_hand[0])
            if self.max_events is not None and self.handled + pending >= self.max_events:
                break
        if in_hand is not None:
            self._finish(*in_hand, source, producer)

    def _begin(self, batch: SourceBatch,
               encoder: Encoder) -> tuple[SourceBatch, PendingCodes | None]:
        count_polled(self.metrics, batch)
        return batch, (encoder.begin([r.event for r in batch.records]) if batch.records else None)

    def _finish(self, batch: SourceBatch, pending: PendingCodes | None, source: Source,
                producer: KafkaProducer) -> None:
        if pending is not None:
            self._publish(batch, pending, producer)
        # Only now, with every output acknowledged, may the input move on.
        source.flush()
        tracker = OffsetTracker()
        tracker.advance_batch(batch)
        source.commit(tracker.offsets())
        self.handled += len(batch)

    def _publish(self, batch: SourceBatch, pending: PendingCodes,
                 producer: KafkaProducer) -> None:
        codes = finish_timed(pending, self.metrics)
        kafka = self.settings.kafka
        futures, too_big = [], []
        for record, (key, value) in zip(batch.records, encode_messages(codes), strict=True):
            if len(value) > kafka.max_message_bytes:
                too_big.append(_oversize(record, len(value), kafka.max_message_bytes))
            else:
                futures.append(producer.send(kafka.features_topic, key=key, value=value))
        # The broker would refuse such a message for good; re-encoding it after every restart
        # would stop this replica forever. It is a dead letter instead, and counted.
        letters = [producer.send(kafka.dlq_topic_name, key=r.key, value=r.raw,
                                 headers=dead_letter_headers(r)) for r in too_big]
        producer.flush(timeout=PUBLISH_TIMEOUT_S)
        for future in futures + letters:
            if not future.is_done or future.failed():
                raise PublishError(
                    f"features message or dead letter not acknowledged ({future.exception}); "
                    "nothing was committed, the batch is re-encoded after a restart"
                )
        self.published += len(futures)
        self.metrics.events_processed.inc(len(futures))
        if too_big:
            self.metrics.events_invalid.labels(reason="oversize").inc(len(too_big))
            logger.warning("%d events dead-lettered: %s", len(too_big), too_big[0].error)

    def _start_http(self, stack: ExitStack) -> None:
        from saewatch.export.web.http import ExporterServer

        server = ExporterServer(
            self.settings.web, self.registry, ReportHolder(), readiness=self.readiness
        )
        stack.enter_context(server)


def _oversize(record: Record, size: int, limit: int) -> InvalidRecord:
    """The dead letter of an event whose features message is too large for the topic. Its
    value is the event as validated (the raw bytes are not kept past validation)."""
    error = (f"its features message is {size} bytes > kafka.max_message_bytes {limit}: raise "
             "the limit (and the broker's message.max.bytes) or lower source.max_chars")
    return InvalidRecord(position=record.position, reason="oversize", error=error,
                         raw=record.event.model_dump_json().encode(),
                         key=record.event.model_id.encode())


def _no_resume(topic: str, partition: int) -> int | None:
    return None  # stateless: the group's committed offsets are the truth


def _default_source(settings: Settings) -> SourceFactory:
    def build(resume: ResumeOffset, stop: threading.Event) -> Source:
        from saewatch.source.kafka import KafkaSource

        return KafkaSource(settings, resume, stop=stop)

    return build


def _default_producer(settings: Settings, stop: threading.Event) -> Callable[[], KafkaProducer]:
    def build() -> KafkaProducer:
        from saewatch.source.producer import connect_producer

        # With the stop event a SIGTERM ends the wait for a broker that is away.
        return connect_producer(settings.kafka, stop=stop)

    return build
