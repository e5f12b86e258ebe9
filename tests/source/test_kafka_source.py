"""KafkaSource against the real broker: accounting, dead letters, commits, restarts, groups."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from saewatch.config import Settings
from saewatch.consume import IngestResult, ingest
from saewatch.datasets import alpaca_events
from saewatch.models import SourceBatch
from saewatch.source.deadletter import ERROR_CLASSES
from saewatch.source.exceptions import OffsetRegressionError
from saewatch.source.kafka import KafkaSource
from saewatch.source.producer import connect_producer, publish
from tests.support.kafka import KafkaCluster

pytestmark = pytest.mark.kafka

MAX_BYTES = 8_192
MAX_CHARS = 1_500
GOOD = {
    "event_id": "poison-base",
    "timestamp": "2026-11-20T10:00:00Z",
    "model_id": "bot",
    "model_version": "v1",
    "prompt": "p",
    "response": "r",
}

# (key, value, expected reason): every kind of poison, several ways.
POISON: list[tuple[bytes, bytes | None, str]] = [
    (b"p-json-1", b'{"event_id": "x",', "invalid_json"),
    (b"p-json-2", b"hello world", "invalid_json"),
    (b"p-json-3", b"", "invalid_json"),
    (b"p-enc-1", b"\xff\xfe\xfa", "encoding"),
    (b"p-enc-2", b'{"event_id": "caf\xe9"}', "encoding"),
    (b"p-schema-1", json.dumps(GOOD | {"timestamp": "2026-11-20T10:00:00"}).encode(), "schema"),
    (
        b"p-schema-2",
        json.dumps({k: v for k, v in GOOD.items() if k != "prompt"}).encode(),
        "schema",
    ),
    (b"p-schema-3", json.dumps(GOOD | {"surprise": True}).encode(), "schema"),
    (b"p-schema-4", b"[]", "schema"),
    (b"p-big-1", json.dumps(GOOD | {"response": "x" * (MAX_BYTES + 10)}).encode(), "oversize"),
    (b"p-big-2", b"\x00" * (MAX_BYTES + 1), "oversize"),
]


def _settings(
    cluster: KafkaCluster, topic: str, group: str | None = None, **kafka: object
) -> Settings:
    return cluster.settings(
        topic,
        group,
        kafka={"max_message_bytes": MAX_BYTES, "session_timeout_ms": 10_000} | kafka,
        source={"max_chars": MAX_CHARS},
    )


def _collect(
    source: KafkaSource, stop: threading.Event, out: list[SourceBatch], **kw: object
) -> IngestResult:
    kw = {"batch_size": 25, "poll_timeout_s": 0.5, "idle_exit_s": 8.0} | kw
    return ingest(source, stop, on_batch=out.append, **kw)  # type: ignore[arg-type]


def test_every_record_is_accounted_for(kafka_cluster: KafkaCluster) -> None:
    topic = kafka_cluster.create_topic(partitions=3)
    settings = _settings(kafka_cluster, topic)
    events = alpaca_events("gpt4_1106_preview", limit=120, seed=7)
    producer = connect_producer(settings.kafka, timeout_s=30)
    publish(events, producer, topic, progress=False)
    producer.close()
    kafka_cluster.produce_raw(topic, [(k, v) for k, v, _ in POISON])
    total = len(events) + len(POISON)

    batches: list[SourceBatch] = []
    with KafkaSource(settings, connect_timeout_s=30) as source:
        result = _collect(source, threading.Event(), batches, max_records=total)
        stats = source.stats

    valid = [r for b in batches for r in b.records]
    invalid = [r for b in batches for r in b.invalid]
    assert result.records == total
    assert sorted(r.event.event_id for r in valid) == sorted(e.event_id for e in events)
    assert {r.raw for r in invalid} == {v or b"" for _, v, _ in POISON}
    want_reasons = Counter(reason for _, _, reason in POISON)
    assert dict(stats.invalid) == {r: want_reasons.get(r, 0) for r in stats.invalid}
    assert (stats.consumed, stats.valid, stats.dead_letters_acked) == (
        total,
        len(events),
        len(POISON),
    )

    # Truncation: exactly the texts longer than MAX_CHARS were cut, to MAX_CHARS.
    by_id = {e.event_id: e for e in events}
    long_fields = Counter(
        f for e in events for f in ("prompt", "response") if len(e.text(f)) > MAX_CHARS
    )
    assert long_fields["response"] > 5  # the sample really exercises truncation
    assert stats.truncated_fields == {
        "prompt": long_fields["prompt"],
        "response": long_fields["response"],
    }
    for record in valid:
        original = by_id[record.event.event_id]
        for f in ("prompt", "response"):
            cut = f in record.truncated_fields
            assert cut == (len(original.text(f)) > MAX_CHARS)
            assert record.event.text(f) == original.text(f)[:MAX_CHARS]

    # Dead letters: unchanged key and value, headers naming reason, class and source position.
    expected = {k: (v or b"", reason) for k, v, reason in POISON}
    letters = kafka_cluster.read_topic(f"{topic}.dlq")
    assert len(letters) == len(POISON)
    positions = {(r.position.partition, r.position.offset) for r in invalid}
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        value, reason = expected[letter.key]
        assert (letter.value or b"") == value
        assert headers["saewatch.error.reason"] == reason
        assert headers["saewatch.error.class"] == ERROR_CLASSES[reason]
        assert headers["saewatch.error.message"]
        assert headers["saewatch.source.topic"] == topic
        assert (
            int(headers["saewatch.source.partition"]),
            int(headers["saewatch.source.offset"]),
        ) in positions

    # Offsets: the group's committed offsets are the end of every partition.
    ends = kafka_cluster.end_offsets(topic)
    assert sum(ends.values()) == total
    assert kafka_cluster.committed(settings.kafka.group_id, topic) == ends


def test_restart_resumes_after_the_last_commit(kafka_cluster: KafkaCluster) -> None:
    topic = kafka_cluster.create_topic(partitions=1)
    settings = _settings(kafka_cluster, topic)
    events = alpaca_events("claude-2.1", limit=40)
    producer = connect_producer(settings.kafka, timeout_s=30)
    publish(events, producer, topic, progress=False)
    producer.close()

    first: list[SourceBatch] = []
    with KafkaSource(settings, connect_timeout_s=30) as source:
        _collect(source, threading.Event(), first, batch_size=7, max_records=21)
    assert kafka_cluster.committed(settings.kafka.group_id, topic) == {0: 21}

    # A crash mid-batch: records polled but never committed are read again after a restart.
    with KafkaSource(settings, connect_timeout_s=30) as source:
        uncommitted = _poll_until(source, 5)
    assert [r.position.offset for r in uncommitted.records] == [21, 22, 23, 24, 25]
    assert kafka_cluster.committed(settings.kafka.group_id, topic) == {0: 21}

    second: list[SourceBatch] = []
    with KafkaSource(settings, connect_timeout_s=30) as source:
        _collect(source, threading.Event(), second, batch_size=7, max_records=19)
    offsets = [r.position.offset for b in (*first, *second) for r in b.records]
    assert offsets == list(range(40))  # no gap, no duplicate
    ids = [r.event.event_id for b in (*first, *second) for r in b.records]
    assert ids == [e.event_id for e in events]
    assert kafka_cluster.committed(settings.kafka.group_id, topic) == {0: 40}


def test_resume_callback_seeks_to_snapshot_offsets(kafka_cluster: KafkaCluster) -> None:
    topic = kafka_cluster.create_topic(partitions=2)
    settings = _settings(kafka_cluster, topic)
    kafka_cluster.produce_raw(
        topic,
        [(None, json.dumps(GOOD | {"event_id": f"a{i}"}).encode()) for i in range(10)],
        partition=0,
    )
    kafka_cluster.produce_raw(
        topic,
        [(None, json.dumps(GOOD | {"event_id": f"b{i}"}).encode()) for i in range(10)],
        partition=1,
    )
    asked: list[tuple[str, int]] = []

    def resume(t: str, p: int) -> int | None:
        asked.append((t, p))
        return 7 if p == 0 else None  # partition 1: no snapshot, use the group offset

    with KafkaSource(settings, resume, connect_timeout_s=30) as source:
        batches: list[SourceBatch] = []
        _collect(source, threading.Event(), batches, max_records=13)
    assert sorted(asked) == [(topic, 0), (topic, 1)]
    got = sorted((r.position.partition, r.position.offset) for b in batches for r in b.records)
    assert got == [(0, 7), (0, 8), (0, 9)] + [(1, i) for i in range(10)]


def test_two_members_split_partitions_and_see_each_event_once(kafka_cluster: KafkaCluster) -> None:
    topic = kafka_cluster.create_topic(partitions=4)
    group = f"pair-{topic}"
    # The default size limit: some Mistral responses are longer than this module's MAX_BYTES.
    settings = _settings(kafka_cluster, topic, group, max_message_bytes=1_048_576)
    sources = [KafkaSource(settings, connect_timeout_s=30) for _ in range(2)]
    try:
        _wait_for_split(sources, 4)
        events = alpaca_events("Mistral-7B-Instruct-v0.2", limit=200, seed=1)
        producer = connect_producer(sources[0].settings.kafka, timeout_s=30)
        publish(events, producer, topic, progress=False)
        producer.close()
        outs: list[list[SourceBatch]] = [[], []]
        stop = threading.Event()
        threads = [
            threading.Thread(target=_collect, args=(s, stop, out), kwargs={"idle_exit_s": 6.0})
            for s, out in zip(sources, outs, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assignments = [s.assignment() for s in sources]
    finally:
        for s in sources:
            s.close()
    assert not any(t.is_alive() for t in threads)
    seen = [[r.event.event_id for b in out for r in b.records] for out in outs]
    assert len(seen[0]) > 0 and len(seen[1]) > 0
    assert not [bad for out in outs for b in out for bad in b.invalid]
    assert sorted(seen[0] + seen[1]) == sorted(e.event_id for e in events)  # each exactly once
    for member, out in enumerate(outs):
        parts = {r.position.partition for b in out for r in b.records}
        assert parts <= {p for _, p in assignments[member]}
    assert assignments[0].isdisjoint(assignments[1])
    assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_commit_rules_and_lag(kafka_cluster: KafkaCluster) -> None:
    topic = kafka_cluster.create_topic(partitions=1)
    settings = _settings(kafka_cluster, topic)
    kafka_cluster.produce_raw(
        topic, [(None, json.dumps(GOOD | {"event_id": f"e{i}"}).encode()) for i in range(10)]
    )
    with KafkaSource(settings, connect_timeout_s=30) as source:
        batch = _poll_until(source, 4)
        assert [r.position.offset for r in batch.records] == [0, 1, 2, 3]
        _wait_for(lambda: source.lag() == {(topic, 0): 6})
        source.commit({(topic, 0): 4, ("some-other-topic", 0): 99})  # not assigned: skipped
        with pytest.raises(
            OffsetRegressionError, match=rf"{topic}\[0\]@2 is below the committed offset 4"
        ):
            source.commit({(topic, 0): 2})
        assert source.stats.commits == 1
    assert kafka_cluster.committed(settings.kafka.group_id, topic) == {0: 4}


def _poll_until(source: KafkaSource, n: int, timeout_s: float = 30.0) -> SourceBatch:
    records = []
    _wait_for(
        lambda: (
            records.extend(source.poll_batch(n - len(records), 0.5).records) or len(records) >= n
        ),
        timeout_s,
    )
    return SourceBatch(records=tuple(records))


def _wait_for_split(sources: list[KafkaSource], partitions: int, timeout_s: float = 60.0) -> None:
    """Poll every member until the group has settled with each holding some partitions."""

    def settled() -> bool:
        for s in sources:
            assert not len(s.poll_batch(1, 0.3))  # the topic is still empty
        got = [s.assignment() for s in sources]
        return all(got) and sum(len(a) for a in got) == partitions and got[0].isdisjoint(got[1])

    _wait_for(settled, timeout_s)


def _wait_for(condition: object, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
