"""Scale-out on a real broker: 3 `saewatch encode` replicas and one `saewatch aggregate` on a
6-partition topic; one encoder is killed with -9 mid-stream and a new one joins later. The
aggregator's state equals, count for count, that of a one-process run over the same events."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import numpy as np
import pytest

from saewatch.app import App
from saewatch.config import Settings, StateSettings, load_settings
from saewatch.source.file import write_events
from saewatch.state.monitor import MonitorState
from tests.support.app import (
    handled,
    pair_events,
    serving,
    snapshots_of,
    start,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.kafka

EVENTS_PER_VERSION = 90
POISON = [b"{oops", b'{"event_id": "no-fields"}']


def _single_process_state(tmp_path: Path, events, dirs: tuple[Path, Path]) -> MonitorState:
    path = tmp_path / "events.jsonl"
    with path.open("w") as out:
        write_events(events, out)
    base = load_settings(None, encode={"model": str(dirs[0]), "sae": {"path": str(dirs[1])},
                                       "device": "cpu", "max_tokens_per_text": 32,
                                       "precision": "fp32"})  # as write_config: batch-invariant
    settings: Settings = base.model_copy(update={
        "source": base.source.model_copy(update={"kind": "file", "path": path, "batch_size": 16}),
        "state": base.state.model_copy(update={"snapshot_dir": tmp_path / "single"}),
    })
    app = App(settings, serve_http=False)
    app.run()
    assert app.state is not None
    return app.state


def _restored(config: Path) -> MonitorState:
    latest = snapshots_of(config).load_latest()
    assert latest is not None
    state = MonitorState(StateSettings())
    state.restore(latest.state)
    return state


def test_encoders_and_aggregator_count_exactly_like_one_process(
    tmp_path: Path, kafka_cluster, tiny_model_dirs: tuple[Path, Path]
) -> None:
    events_topic = kafka_cluster.create_topic(6, prefix="scale")
    features_topic = kafka_cluster.create_topic(3, prefix="features")
    events = pair_events(EVENTS_PER_VERSION)
    messages = [(e.event_id.encode(), e.model_dump_json().encode()) for e in events]
    messages += [(None, bad) for bad in POISON]
    random.Random(3).shuffle(messages)
    kafka_cluster.produce_raw(events_topic, messages)
    log = tmp_path / "daemons.log"
    group = f"{events_topic}-g"

    def config(name: str) -> Path:
        return write_config(tmp_path / f"{name}.yaml", kafka_cluster.bootstrap, events_topic,
                            tiny_model_dirs, features_topic=features_topic, group_id=group,
                            max_poll_records=8)

    aggregator = start("aggregate", config("aggregator"), log)
    encoders = [start("encode", config(f"encoder{i}"), log) for i in range(3)]

    def encoded() -> int:
        return sum(kafka_cluster.committed(group, events_topic).values())

    wait_for(lambda: encoded() >= len(messages) // 4, [aggregator, *encoders], log)
    encoders[0].send_signal(signal.SIGKILL)  # mid-stream: its uncommitted batch is replayed
    encoders[0].wait(timeout=30)
    wait_for(lambda: encoded() >= len(messages) // 2, [aggregator, *encoders[1:]], log)
    encoders.append(start("encode", config("encoder3"), log))  # joins: another rebalance
    live = [aggregator, *encoders[1:]]
    wait_for(lambda: serving(tmp_path / "encoder3.yaml"), live, log)
    wait_for(lambda: encoded() >= len(messages), live, log)
    features_end = sum(kafka_cluster.end_offsets(features_topic).values())
    wait_for(lambda: handled(snapshots_of(config("aggregator")), features_topic) >= features_end,
             live, log)
    for proc in live:
        proc.send_signal(signal.SIGTERM)
    assert [p.wait(timeout=60) for p in live] == [0] * len(live), log.read_text()[-4000:]

    assert features_end >= len(events)  # replays after the kill are allowed, not counted twice
    got = _restored(tmp_path / "aggregator.yaml")
    want = _single_process_state(tmp_path, events, tiny_model_dirs)
    assert got.version_counts() == want.version_counts()
    for version in ("v1", "v2"):
        for field in ("prompt", "response"):
            a, b = got.counts("bot", version, field), want.counts("bot", version, field)
            assert a.n_documents == b.n_documents == EVENTS_PER_VERSION
            np.testing.assert_array_equal(a.fired, b.fired)
    dead = kafka_cluster.read_topic(f"{events_topic}.dlq")
    assert {r.value for r in dead} >= set(POISON)
