"""Publish LLM events to a Kafka topic (the demo's and tests' feed), with a progress bar.

Every message is JSON (the :class:`~saewatch.models.LLMEvent` schema), keyed by ``event_id``
(spreads load over partitions) or ``model_id`` (keeps one application's events in order), and
acknowledged by all in-sync replicas (``acks=all``) before :func:`publish` returns.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TextIO

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata

from saewatch.config import KafkaSettings
from saewatch.models import LLMEvent
from saewatch.source.client import producer_options, redact
from saewatch.source.exceptions import ProduceError
from saewatch.source.retry import connect_with_retry
from saewatch.source.stats import SourceStats

logger = logging.getLogger(__name__)

KeyBy = Literal["event_id", "model_id"]
# Check delivery every this many sends, so a failing broker is noticed early and memory for
# pending futures stays bounded.
CHECK_EVERY = 500


@dataclass
class PublishResult:
    """What :func:`publish` delivered: totals and per-partition counts of ``topic``."""

    topic: str
    sent: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


class Progress:
    """A one-line progress bar on a terminal (nothing when ``stream`` is not a TTY).

    >>> import io
    >>> p = Progress(total=4, stream=io.StringIO(), force=True)
    >>> p.update(2); p.stream.getvalue().strip()
    'produced 2/4 [##########----------]  50%'
    """

    WIDTH = 20

    def __init__(
        self, total: int | None, stream: TextIO | None = None, *, force: bool = False
    ) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self._done = 0

    def update(self, n: int = 1) -> None:
        self._done += n
        if not self.enabled:
            return
        if self.total:
            filled = self.WIDTH * self._done // self.total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            pct = 100 * self._done // self.total
            self.stream.write(f"\rproduced {self._done}/{self.total} [{bar}] {pct:3d}%")
        else:
            self.stream.write(f"\rproduced {self._done}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def connect_producer(
    kafka: KafkaSettings, timeout_s: float | None = None, stop: threading.Event | None = None
) -> KafkaProducer:
    """A durable (``acks=all``) producer, waiting with backoff for an unavailable broker (until
    ``timeout_s``, or ``stop`` is set: then
    :class:`~saewatch.source.exceptions.SourceClosedError`)."""
    opts = producer_options(kafka)
    logger.info("connecting producer %s", redact(opts))
    return connect_with_retry(
        lambda: KafkaProducer(**opts), kafka, SourceStats(), stop=stop, timeout_s=timeout_s
    )


def publish(
    events: Iterable[LLMEvent],
    producer: KafkaProducer,
    topic: str,
    *,
    key_by: KeyBy = "event_id",
    total: int | None = None,
    progress: bool = True,
    timeout_s: float = 60.0,
) -> PublishResult:
    """Send ``events`` to ``topic`` and wait until the broker has acknowledged every one.

    Raises
    ------
    ProduceError
        If any event was not acknowledged (the message says how many and why).
    """
    result = PublishResult(topic=topic)
    bar = Progress(total) if progress else None
    pending: list[FutureRecordMetadata] = []
    started = time.monotonic()
    for event in events:
        key = (event.event_id if key_by == "event_id" else event.model_id).encode()
        try:
            pending.append(producer.send(topic, value=event.model_dump_json().encode(), key=key))
        except KafkaTimeoutError as exc:
            raise ProduceError(f"cannot send to {topic}: {exc}; is the broker up?") from exc
        if len(pending) >= CHECK_EVERY:
            _settle(producer, pending, result, timeout_s, bar)
            pending = []
    _settle(producer, pending, result, timeout_s, bar)
    if bar is not None:
        bar.close()
    result.seconds = time.monotonic() - started
    logger.info("published %d events to %s in %.1fs", result.sent, topic, result.seconds)
    return result


def _settle(
    producer: KafkaProducer,
    pending: list[FutureRecordMetadata],
    result: PublishResult,
    timeout_s: float,
    bar: Progress | None,
) -> None:
    try:
        producer.flush(timeout=timeout_s)
    except KafkaTimeoutError as exc:
        raise ProduceError(
            f"{result.topic}: {len(pending)} events not acknowledged within {timeout_s:.0f}s"
        ) from exc
    failed: list[BaseException] = []
    for future in pending:
        if future.succeeded():
            result.sent += 1
            part = future.value.partition
            result.per_partition[part] = result.per_partition.get(part, 0) + 1
        else:
            failed.append(future.exception or KafkaError("not completed"))
    if bar is not None:
        bar.update(len(pending) - len(failed))
    if failed:
        raise ProduceError(
            f"{len(failed)} of {len(pending)} events to {result.topic} failed; first: {failed[0]!r}"
        ) from failed[0]
