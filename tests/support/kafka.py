"""Helpers for tests against a real Kafka broker: start one from ``deploy/kafka``, create topics,
produce raw bytes, read topics and group offsets back. Real clients only, no mocks.

Used by ``tests/conftest.py`` (fixtures ``kafka_bootstrap``, ``kafka_cluster``) and by tests that
need a broker of their own (e.g. to stop it mid-stream). :class:`LocalBroker` runs the scripts of
a source checkout (``<root>/deploy/kafka``); it needs Java 17+ and, once, Maven.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from saewatch.config import Settings, load_settings

# This file sits at <root>/tests/support/kafka.py.
KAFKA_DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
# A cold start fetches the jars with Maven first; later starts take a few seconds.
BROKER_START_TIMEOUT_S = 600


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_answers(bootstrap: str, timeout_ms: int = 5_000) -> bool:
    """True when a Kafka broker at ``bootstrap`` lists its topics within ``timeout_ms``."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


class LocalBroker:
    """A broker of ``deploy/kafka`` on free ports, with its data and logs in ``run_dir``.

    ``start()`` and ``stop()`` may be called repeatedly (data is kept between them);
    ``stop(purge=True)`` also deletes ``run_dir``.

    With ``secure=True`` it is started with ``start.sh --secure``: besides the plaintext
    ``bootstrap`` (for the tests' own helpers) it serves ``sasl_ssl`` and ``sasl_plaintext``
    (SCRAM-SHA-512/256, user :attr:`SCRAM_USER`), with its throw-away CA, the user's password and
    a client certificate in :attr:`secrets` (see ``deploy/kafka/secure.sh``).
    """

    SCRAM_USER = "saewatch"

    def __init__(self, run_dir: Path, *, secure: bool = False) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.secure = secure
        self.secrets = run_dir / "secrets"
        self.env = os.environ | {
            "SAEWATCH_KAFKA_PORT": str(self.port),
            "SAEWATCH_KAFKA_CONTROLLER_PORT": str(free_port()),
            "SAEWATCH_KAFKA_RUN_DIR": str(run_dir),
            "SAEWATCH_KAFKA_SECURE": "1" if secure else "0",
        }
        if secure:
            sasl_ssl, sasl_plaintext = free_port(), free_port()
            self.sasl_ssl = f"127.0.0.1:{sasl_ssl}"
            self.sasl_plaintext = f"127.0.0.1:{sasl_plaintext}"
            self.env |= {
                "SAEWATCH_KAFKA_SASL_SSL_PORT": str(sasl_ssl),
                "SAEWATCH_KAFKA_SASL_PLAINTEXT_PORT": str(sasl_plaintext),
            }

    def secret(self, name: str) -> str:
        """A secret of the secured broker, e.g. ``secret("saewatch.password")``."""
        return (self.secrets / name).read_text().strip()

    def start(self) -> None:
        """Start (or check) the broker; raises ``RuntimeError`` with the script's output."""
        self._run("start.sh")

    def stop(self, purge: bool = False) -> None:
        """Clean shutdown (SIGTERM, then SIGKILL after the script's timeout)."""
        self._run("stop.sh", *(["--purge"] if purge else []))

    def _run(self, script: str, *args: str) -> None:
        done = subprocess.run(
            [str(KAFKA_DEPLOY / script), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BROKER_START_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"deploy/kafka/{script} failed:\n{done.stderr}")


class KafkaCluster:
    """Test helpers bound to one broker (``bootstrap``)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def settings(self, topic: str, group: str | None = None, **sections: Any) -> Settings:
        """Settings pointing at this broker, ``topic`` and a fresh (or given) group.

        ``sections`` override whole sections' fields, e.g. ``source={"max_chars": 100}`` or
        ``kafka={"max_poll_records": 10}``.
        """
        kafka = {
            "bootstrap_servers": [self.bootstrap],
            "topic": topic,
            "group_id": group or f"g-{uuid.uuid4().hex[:10]}",
            "retry_backoff_s": 0.2,
            "retry_backoff_max_s": 2.0,
            "request_timeout_ms": 15_000,
        } | sections.pop("kafka", {})
        return load_settings(None, kafka=kafka, **sections)

    def create_topic(self, partitions: int = 1, prefix: str = "test", dlq: bool = True) -> str:
        """Create a uniquely named topic (and its ``.dlq`` with one partition) and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        spec = {name: {"num_partitions": partitions, "replication_factor": 1}}
        if dlq:
            spec[f"{name}.dlq"] = {"num_partitions": 1, "replication_factor": 1}
        self._admin.create_topics(spec, timeout_ms=30_000, wait_for_metadata=True)
        return name

    def produce_raw(
        self,
        topic: str,
        messages: Sequence[tuple[bytes | None, bytes | None]],
        partition: int | None = None,
    ) -> None:
        """Send ``(key, value)`` pairs exactly as given and wait for ``acks=all``."""
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", max_request_size=4 << 20
        )
        try:
            futures = [
                producer.send(topic, key=k, value=v, partition=partition) for k, v in messages
            ]
            producer.flush(timeout=60)
            for f in futures:
                f.get(timeout=1)
        finally:
            producer.close()

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The next offset to be written, per partition."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            parts = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
        finally:
            consumer.close()

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets on ``topic`` (partitions without a commit left out)."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
        )
        try:
            out = {}
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                off = consumer.committed(TopicPartition(topic, p))
                if off is not None:
                    out[p] = off
            return out
        finally:
            consumer.close(autocommit=False)

    def read_topic(self, topic: str, timeout_s: float = 30.0) -> list[ConsumerRecord]:
        """Every message now in ``topic`` (all partitions, from the beginning, no group)."""
        ends = self.end_offsets(topic)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            parts = [TopicPartition(topic, p) for p in ends]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            out: list[ConsumerRecord] = []
            deadline = time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp.partition] for tp in parts):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read {len(out)} records of {topic}, not all of {ends}")
                for records in consumer.poll(timeout_ms=500).values():
                    out.extend(records)
            return sorted(out, key=lambda r: (r.partition, r.offset))
        finally:
            consumer.close()

    def close(self) -> None:
        self._admin.close()
