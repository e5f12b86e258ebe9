"""Waiting for an unavailable Kafka broker: exponential backoff, logged, interruptible.

>>> from saewatch.config import KafkaSettings
>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise KafkaTimeoutError("no broker")
...     return "connected"
>>> connect_with_retry(flaky, KafkaSettings(retry_backoff_s=0.01), SourceStats())
'connected'
>>> len(calls)
3
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from kafka.errors import KafkaError, KafkaTimeoutError

from saewatch.config import KafkaSettings
from saewatch.source.exceptions import BrokerUnavailableError, SourceClosedError
from saewatch.source.security import check_security
from saewatch.source.stats import SourceStats

logger = logging.getLogger(__name__)

T = TypeVar("T")


def connect_with_retry(
    connect: Callable[[], T],
    kafka: KafkaSettings,
    stats: SourceStats,
    *,
    stop: threading.Event | None = None,
    timeout_s: float | None = None,
) -> T:
    """Call ``connect`` until it stops failing with a retriable Kafka error.

    Waits ``kafka.retry_backoff_s``, doubling up to ``kafka.retry_backoff_max_s``, between tries.

    Before each try, :func:`~saewatch.source.security.check_security` probes the broker (a few
    milliseconds): kafka-python reports a refused login or certificate, or a plaintext client at
    a TLS port, as a timeout after ``bootstrap_timeout_ms``, like a broker that is down.

    Raises
    ------
    SourceClosedError
        If ``stop`` was set while waiting.
    BrokerUnavailableError
        If ``timeout_s`` passed without a broker answering.
    KafkaSecurityError
        At once, when the broker refuses the TLS or SASL settings: retrying cannot help.
    kafka.errors.KafkaError
        Non-retriable errors (authentication, authorisation, ...) at once: retrying cannot help.
    """
    stop = stop or threading.Event()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = kafka.retry_backoff_s
    servers = ",".join(kafka.bootstrap_servers)
    while True:
        check_security(kafka)
        try:
            return connect()
        except KafkaError as exc:
            if not (exc.retriable or isinstance(exc, KafkaTimeoutError)):
                raise
            error: KafkaError = exc
        stats.broker_retries += 1
        if deadline is not None and time.monotonic() + delay > deadline:
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {servers} within {timeout_s:.0f}s ({error}); "
                "check kafka.bootstrap_servers (SAEWATCH_KAFKA_BOOTSTRAP) and that it is up"
            ) from error
        logger.warning(
            "Kafka broker at %s unavailable (%s); retrying in %.1fs", servers, error, delay
        )
        if stop.wait(delay):
            raise SourceClosedError("stopped while waiting for the Kafka broker")
        delay = min(delay * 2, kafka.retry_backoff_max_s)
