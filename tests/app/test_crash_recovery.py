"""kill -9 the daemon at random points while it consumes from the real broker: after restarts the
state counts every valid event exactly once (the snapshot's offsets are the source of truth), and
/metrics accounts for every record produced: processed, invalid or duplicate."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest
from kafka.consumer.fetcher import ConsumerRecord

from saewatch.config import StateSettings
from saewatch.source.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC
from saewatch.state.monitor import MonitorState
from tests.support.app import (
    handled,
    kill_at,
    pair_events,
    scrape,
    snapshots_of,
    start,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.kafka

KILLS = 5
EVENTS_PER_VERSION = 100
POISON = [b"{broken", b'{"event_id": 1}', b"\xc3\x28 not utf-8", b"[]"]
# Events published twice (as a producer's retry does): the state drops the second copy by id.
REPEATED = 6
OUTCOMES = ("processed", "invalid", "duplicate")


def _origin(dead_letter: ConsumerRecord) -> tuple[str, int, int]:
    """The source record a dead letter stands for, from its headers."""
    headers = {k: v.decode() for k, v in dead_letter.headers}
    return headers[HEADER_TOPIC], int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET])


def test_kill_9_at_random_points_loses_and_double_counts_nothing(
    tmp_path: Path, kafka_cluster, tiny_model_dirs: tuple[Path, Path]
) -> None:
    topic = kafka_cluster.create_topic(3, prefix="crash")
    events = pair_events(EVENTS_PER_VERSION)
    messages = [(e.event_id.encode(), e.model_dump_json().encode()) for e in events]
    messages += random.Random(5).sample(messages, REPEATED)
    messages += [(None, bad) for bad in POISON]
    random.Random(7).shuffle(messages)
    total = len(messages)
    # The tail is published only after the last kill: the tiny model drains a topic in well under
    # a second, so with everything published up front the last kill could land after the end.
    cut = total - total // 10
    kafka_cluster.produce_raw(topic, messages[:cut])
    config = write_config(tmp_path / "run.yaml", kafka_cluster.bootstrap, topic, tiny_model_dirs)
    store = snapshots_of(config)
    log = tmp_path / "daemon.log"
    rng = random.Random(11)
    targets = sorted(rng.sample(range(1, cut), KILLS))
    progress = kill_at(targets, config, topic, log, rng)
    assert progress[-1] < total, f"the stream ended before the last kill: {progress}"
    kafka_cluster.produce_raw(topic, messages[cut:])
    proc = start("run", config, log)
    wait_for(lambda: handled(store, topic) >= total, [proc], log)
    samples = scrape(config)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]

    latest = store.load_latest()
    assert latest is not None
    assert latest.offsets == {(topic, p): end for p, end in kafka_cluster.end_offsets(topic).items()}
    state = MonitorState(StateSettings())
    state.restore(latest.state)
    documents = {(v.model_version, v.field): v.documents for v in state.version_counts()}
    expected = {(v, f): EVENTS_PER_VERSION for v in ("v1", "v2") for f in ("prompt", "response")}
    assert documents == expected, f"progress at kills: {progress}"

    # Every record on /metrics: the state's tally, persisted with the offsets, spans all runs...
    records = {o: samples[("saewatch_state_records", (("outcome", o),))] for o in OUTCOMES}
    assert records == {"processed": len(events), "invalid": len(POISON), "duplicate": REPEATED}
    assert sum(records.values()) == total, f"progress at kills: {progress}"
    # ... while the counters are the last process's own, from the snapshot it started at.
    invalid = sum(v for (name, _), v in samples.items() if name == "saewatch_events_invalid_total")
    consumed = samples[("saewatch_events_consumed_total", ())]
    assert consumed == total - progress[-1]
    assert consumed == (samples[("saewatch_events_processed_total", ())] + invalid
                        + samples[("saewatch_events_duplicate_total", ())])

    # Dead letters are at-least-once: a replay may send one again, with the same origin headers.
    poison_at = {(topic, r.partition, r.offset)
                 for r in kafka_cluster.read_topic(topic) if r.value in POISON}
    dead = kafka_cluster.read_topic(f"{topic}.dlq")
    assert len(poison_at) == len(POISON) <= len(dead)
    assert {_origin(r) for r in dead} == poison_at
    assert {r.value for r in dead} == set(POISON)
