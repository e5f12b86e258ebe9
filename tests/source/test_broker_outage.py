"""A broker outage mid-stream: no crash, nothing committed for unhandled records, recovery.

This test stops and restarts a broker, so it runs its own (not the session's shared one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from saewatch.models import InvalidRecord, SourcePosition
from saewatch.source.client import producer_options
from saewatch.source.deadletter import DeadLetterQueue
from saewatch.source.kafka import KafkaSource
from saewatch.source.stats import SourceStats
from tests.support.kafka import KafkaCluster, LocalBroker

pytestmark = pytest.mark.kafka


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(tmp_path / "kafka")
    b.start()
    try:
        yield b
    finally:
        b.stop(purge=True)


def _event(i: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"e{i}",
            "timestamp": "2026-11-20T10:00:00Z",
            "model_id": "m",
            "model_version": "v",
            "prompt": "p",
            "response": "r",
        }
    ).encode()


def test_outage_keeps_offsets_and_recovers(broker: LocalBroker) -> None:
    cluster = KafkaCluster(broker.bootstrap)
    topic = cluster.create_topic(partitions=1)
    cluster.produce_raw(topic, [(None, _event(i)) for i in range(20)])
    group = f"g-{topic}"
    settings = cluster.settings(
        topic,
        group,
        kafka={
            "request_timeout_ms": 3_000,
            "session_timeout_ms": 6_000,
            "retry_backoff_max_s": 1.0,
        },
    )
    cluster.close()
    source = KafkaSource(settings, connect_timeout_s=30)
    dlq_stats = SourceStats()
    dlq_producer = KafkaProducer(**producer_options(settings.kafka) | {"max_block_ms": 2_000})
    dlq = DeadLetterQueue(dlq_producer, settings.kafka.dlq_topic_name, dlq_stats)
    try:
        dlq.send(_poison(topic, 3))
        assert dlq.settle(30.0) == {}  # acknowledged while the broker is up
        handled: list[int] = []
        while len(handled) < 20:
            handled += [r.position.offset for r in source.poll_batch(20, 0.5).records]
        assert handled == list(range(20))
        source.commit({(topic, 0): 10})  # only the first half is "handled" before the outage

        broker.stop()
        for _ in range(3):  # polls during the outage return nothing and raise nothing
            assert len(source.poll_batch(10, 0.5)) == 0
        source.commit({(topic, 0): 20})  # fails: logged, counted, not raised
        assert source.stats.commit_failures == 1
        dlq.send(_poison(topic, 15))  # a dead letter that cannot be delivered now...
        assert dlq.settle(2.0, 0.2) == {(topic, 0): 15}  # ...holds commits below its offset
        assert dlq.pending == 1 and dlq_stats.dead_letters_acked == 1

        broker.start()
        cluster = KafkaCluster(broker.bootstrap)
        assert cluster.committed(group, topic) == {0: 10}  # nothing committed during the outage
        redelivered: list[int] = []
        deadline = time.monotonic() + 90
        while cluster.committed(group, topic) != {0: 20}:
            assert time.monotonic() < deadline, "no commit after the broker came back"
            redelivered += [r.position.offset for r in source.poll_batch(20, 0.5).records]
            source.commit({(topic, 0): 20})
        assert dlq.settle(60.0, 0.2) == {}  # delivered once the broker is back
        letters = cluster.read_topic(settings.kafka.dlq_topic_name)
        assert sorted(dict(r.headers)["saewatch.source.offset"] for r in letters) == [b"15", b"3"]
        cluster.close()
    finally:
        dlq_producer.close()
        source.close()
    # After the rejoin the partition may restart from the committed offset: at-least-once, so
    # only records after it can come again, never anything before it.
    assert all(10 <= o < 20 for o in redelivered)
    assert source.stats.broker_retries == 0  # the connection was up at start
    assert source.stats.commits >= 2
    assert dlq_stats.dead_letters_acked == 2 and dlq.pending == 0


def _poison(topic: str, offset: int) -> InvalidRecord:
    position = SourcePosition(topic=topic, partition=0, offset=offset)
    return InvalidRecord(position=position, reason="invalid_json", error="test", raw=b"{")
