"""kafka-python 3.x client options built from :class:`~saewatch.config.KafkaSettings`.

Connection and security settings (SSL, SASL and its password, read from the environment or a
file) pass through unchanged to every client saewatch creates: consumer, dead-letter producer,
event producer and admin client. Secrets never reach a log line: log :func:`redact` output only.

>>> from saewatch.config import KafkaSettings
>>> opts = client_options(KafkaSettings(bootstrap_servers=["k1:9093"],
...     security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
...     sasl_username="svc", sasl_password="s3cret"))
>>> opts["security_protocol"], opts["sasl_plain_username"], redact(opts)["sasl_plain_password"]
('SASL_SSL', 'svc', '***')
"""

from __future__ import annotations

from typing import Any

from saewatch.config import KafkaSettings

# Option names whose values must never be logged.
_SECRET_OPTIONS = frozenset({"sasl_plain_password", "ssl_password", "sasl_oauth_token_provider"})
# The consumer's fetch wait must stay below its request timeout (kafka-python checks this).
FETCH_MAX_WAIT_MS = 500


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Options shared by every kafka-python client: brokers, identity, timeouts, security."""
    opts: dict[str, Any] = {
        "bootstrap_servers": list(kafka.bootstrap_servers),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
        "bootstrap_timeout_ms": kafka.request_timeout_ms,
        "retry_backoff_ms": int(kafka.retry_backoff_s * 1000),
        "reconnect_backoff_ms": int(kafka.retry_backoff_s * 1000),
        "reconnect_backoff_max_ms": int(kafka.retry_backoff_max_s * 1000),
    }
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(kafka, name)
        if path is not None:
            opts[name] = str(path)
    if kafka.sasl_mechanism is not None:
        opts["sasl_mechanism"] = kafka.sasl_mechanism
        if kafka.sasl_username is not None:
            opts["sasl_plain_username"] = kafka.sasl_username
        password = kafka.password()
        if password is not None:
            opts["sasl_plain_password"] = password
    key_password = kafka.key_password()
    if key_password is not None:
        opts["ssl_password"] = key_password
    return opts


def consumer_options(kafka: KafkaSettings, max_poll_records: int) -> dict[str, Any]:
    """Options of the at-least-once consumer: raw bytes, manual commits, bounded polls."""
    return client_options(kafka) | {
        "group_id": kafka.group_id,
        # No deserializers: values arrive as bytes and are validated in the poll loop, so a
        # poison message can never raise inside the client and block its partition.
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "max_poll_records": max_poll_records,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": max(1_000, kafka.session_timeout_ms // 3),
        "fetch_max_wait_ms": min(FETCH_MAX_WAIT_MS, kafka.request_timeout_ms // 2),
        # The broker still sends whole batches; oversize records are dead-lettered by size.
        "max_partition_fetch_bytes": max(1_048_576, 2 * kafka.max_message_bytes),
        "allow_auto_create_topics": False,
    }


def producer_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Options of a durable producer: every write acknowledged by all in-sync replicas."""
    return client_options(kafka) | {
        "acks": "all",
        # Broker-side deduplication of the producer's own retries (kafka-python >= 3).
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_request_size": max(1_048_576, 2 * kafka.max_message_bytes),
        "delivery_timeout_ms": max(kafka.request_timeout_ms * 2, 30_000),
    }


def redact(opts: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``opts`` that is safe to log (secrets replaced by ``***``)."""
    return {k: ("***" if k in _SECRET_OPTIONS and v is not None else v) for k, v in opts.items()}
