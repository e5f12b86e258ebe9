"""``saewatch encode``: an event whose features message the broker would refuse is a dead letter.

Such a message failed for good on every attempt, so the replica stopped, restarted, re-encoded the
same uncommitted batch and stopped again, forever. Now the event goes to the events' dead-letter
topic (reason ``oversize``), the rest of the batch is published, and the input is committed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from saewatch.codec import decode_messages
from saewatch.encode.encoder import SAEEncoder
from saewatch.models import LLMEvent
from saewatch.roles import EncodeWorker
from saewatch.state.testing import T0
from tests.support.kafka import KafkaCluster

pytestmark = pytest.mark.kafka

LIMIT = 8_192


def event(i: int, response: str) -> LLMEvent:
    return LLMEvent(event_id=f"e{i}", timestamp=T0, model_id="bot", model_version="v1",
                    prompt=f"Question {i}?", response=response)


def test_an_event_too_large_once_encoded_is_dead_lettered_not_a_crash_loop(
    kafka_cluster: KafkaCluster, tiny_encoder_factory: Callable[[], SAEEncoder]
) -> None:
    topic = kafka_cluster.create_topic(partitions=1, prefix="events")
    features = kafka_cluster.create_topic(partitions=1, prefix="features", dlq=False)
    big = event(1, ("words and more words " * 380)[:7_990])  # ~8.1 KB: valid, under the limit
    events = [event(0, "A short answer."), big, event(2, "Another short answer.")]
    assert all(len(e.model_dump_json()) < LIMIT for e in events)
    kafka_cluster.produce_raw(topic, [(e.event_id.encode(), e.model_dump_json().encode())
                                      for e in events])
    settings = kafka_cluster.settings(
        topic, kafka={"features_topic": features, "max_message_bytes": LIMIT},
        web={"listen_address": "127.0.0.1:0"})
    registry = CollectorRegistry()
    worker = EncodeWorker(settings, encoder_factory=tiny_encoder_factory, registry=registry,
                          max_events=len(events))
    assert worker.run() == 0

    published = kafka_cluster.read_topic(features)
    assert [m.events[0].event_id for m in map(lambda r: decode_messages([r.value]), published)] \
        == ["e0", "e2"]
    assert all(len(r.value) <= LIMIT for r in published)
    letters = kafka_cluster.read_topic(f"{topic}.dlq")
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["saewatch.error.reason"] == b"oversize"
    assert b"kafka.max_message_bytes 8192" in headers["saewatch.error.message"]
    assert LLMEvent.model_validate_json(letters[0].value) == big
    get = registry.get_sample_value
    assert get("saewatch_events_consumed_total") == 3
    assert get("saewatch_events_processed_total") == 2
    assert get("saewatch_events_invalid_total", {"reason": "oversize"}) == 1
    # The input moved on past all three: a restart does not meet the big event again.
    assert kafka_cluster.committed(settings.kafka.group_id, topic) == {0: 3}
