"""publish(): every event acknowledged, keyed as asked, readable back unchanged."""

from __future__ import annotations

import io
import uuid

import pytest

from saewatch.datasets import alpaca_events
from saewatch.models import LLMEvent
from saewatch.source.admin import ensure_topics
from saewatch.source.producer import Progress, connect_producer, publish
from tests.support.kafka import KafkaCluster


@pytest.mark.kafka
def test_publish_round_trip_keyed_by_event_id(kafka_cluster: KafkaCluster) -> None:
    topic = kafka_cluster.create_topic(partitions=3, dlq=False)
    settings = kafka_cluster.settings(topic)
    events = alpaca_events("claude-2.1_concise", limit=45, seed=2)
    producer = connect_producer(settings.kafka, timeout_s=30)
    try:
        result = publish(events, producer, topic, progress=False)
    finally:
        producer.close()
    assert result.sent == 45 and sum(result.per_partition.values()) == 45
    assert len(result.per_partition) == 3  # keys spread over every partition
    back = kafka_cluster.read_topic(topic)
    assert {r.key.decode(): LLMEvent.model_validate_json(r.value) for r in back} == {
        e.event_id: e for e in events
    }
    assert {p: n for p, n in result.per_partition.items()} == {
        p: sum(1 for r in back if r.partition == p) for p in range(3)
    }


@pytest.mark.kafka
def test_publish_keyed_by_model_id_keeps_one_partition(kafka_cluster: KafkaCluster) -> None:
    topic = f"keyed-{uuid.uuid4().hex[:12]}"
    settings = kafka_cluster.settings(topic)
    assert ensure_topics(settings.kafka, {topic: 4}) == [topic]
    assert ensure_topics(settings.kafka, {topic: 4}) == []  # idempotent
    events = alpaca_events("NullModel", model_id="helpdesk", limit=20)
    producer = connect_producer(settings.kafka, timeout_s=30)
    try:
        result = publish(events, producer, topic, key_by="model_id", progress=False)
    finally:
        producer.close()
    assert list(result.per_partition.values()) == [20]
    back = kafka_cluster.read_topic(topic)
    assert {r.key for r in back} == {b"helpdesk"}
    assert [LLMEvent.model_validate_json(r.value).event_id for r in back] == [
        e.event_id for e in events
    ]


def test_progress_bar_only_on_terminals() -> None:
    quiet = io.StringIO()
    bar = Progress(total=10, stream=quiet)
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    bar = Progress(total=10, stream=shown, force=True)
    bar.update(10)
    bar.close()
    assert shown.getvalue() == "\rproduced 10/10 [####################] 100%\n"
