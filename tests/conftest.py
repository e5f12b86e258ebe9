"""Shared fixtures: a real Kafka broker for tests marked ``kafka``, and helpers around it.

``kafka_bootstrap`` (session)
    ``host:port`` of a broker. If ``SAEWATCH_KAFKA_BOOTSTRAP`` names a reachable broker it is
    used as is; otherwise ``deploy/kafka/start.sh`` starts one on free ports with its data in a
    temporary folder, and ``deploy/kafka/stop.sh --purge`` stops it when the session ends.
``kafka_cluster`` (session)
    A :class:`KafkaCluster`: create uniquely named topics, produce raw messages, read a topic
    back, and read a group's committed offsets and a topic's end offsets.
``kafka_topic`` (function)
    A fresh topic with one partition (call ``kafka_cluster.create_topic`` for more).

Only tests that ask for these fixtures need Java and the broker; mark them
``@pytest.mark.kafka`` so ``-m "not kafka"`` runs everything else without one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from saewatch.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
KAFKA_DEPLOY = ROOT / "deploy" / "kafka"
# A cold start fetches the jars with Maven first; later starts take a few seconds.
BROKER_START_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _broker_answers(bootstrap: str, timeout_ms: int = 5_000) -> bool:
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


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker: the given one, or one this session starts and stops."""
    given = os.environ.get("SAEWATCH_KAFKA_BOOTSTRAP")
    if given and _broker_answers(given):
        yield given
        return
    port, controller = _free_port(), _free_port()
    env = os.environ | {
        "SAEWATCH_KAFKA_PORT": str(port),
        "SAEWATCH_KAFKA_CONTROLLER_PORT": str(controller),
        "SAEWATCH_KAFKA_RUN_DIR": str(tmp_path_factory.mktemp("kafka")),
    }
    started = subprocess.run(
        [str(KAFKA_DEPLOY / "start.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=BROKER_START_TIMEOUT_S,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"deploy/kafka/start.sh failed:\n{started.stderr}", pytrace=False)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(
            [str(KAFKA_DEPLOY / "stop.sh"), "--purge"], env=env, capture_output=True, timeout=120
        )


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


@pytest.fixture(scope="session")
def kafka_cluster(kafka_bootstrap: str) -> Iterator[KafkaCluster]:
    """Helpers for the session's broker (see :class:`KafkaCluster`)."""
    cluster = KafkaCluster(kafka_bootstrap)
    yield cluster
    cluster.close()


@pytest.fixture
def kafka_topic(kafka_cluster: KafkaCluster) -> str:
    """A fresh one-partition topic (with its ``.dlq``)."""
    return kafka_cluster.create_topic(1)
