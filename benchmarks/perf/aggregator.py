"""The aggregator's own speed: events/s of ``App(role="aggregate")`` reading a filled features topic.

The codes are real: the features messages that ``saewatch encode`` published during the
scale-out runs, de-duplicated and cloned under new event ids until there are ``n_messages``
(the aggregator drops repeated ids, so clones need their own). They are written to a fresh
features topic, keyed by ``model_id`` as the encoders key them; each run then reads the whole
topic as a fresh consumer group with fresh state: Kafka fetch, JSON decode, state update, diff
timer, and the final forced checkpoint, all timed.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from benchmarks.perf.streams import median, rate
from saewatch.app import App
from saewatch.codec import decode_messages, encode_messages
from saewatch.config import EncodeSettings, Settings, load_settings
from saewatch.models import FeatureBatch
from tests.support.kafka import KafkaCluster, free_port

logger = logging.getLogger(__name__)

PRODUCE_CHUNK = 2_000


class AggregatorCountError(RuntimeError):
    """The aggregator's state does not hold every message exactly once."""


def unique_batch(cluster: KafkaCluster, features_topic: str) -> FeatureBatch:
    """The features topic's messages as one batch, each event id once (replays dropped)."""
    seen: dict[str, bytes] = {}
    for record in cluster.read_topic(features_topic):
        batch = decode_messages([record.value])
        seen.setdefault(batch.events[0].event_id, record.value)
    return decode_messages(list(seen.values()))


def cloned_messages(batch: FeatureBatch, n_messages: int) -> list[tuple[bytes, bytes]]:
    """``n_messages`` features messages: ``batch`` repeated under fresh event ids."""
    out: list[tuple[bytes, bytes]] = []
    copy = 0
    while len(out) < n_messages:
        events = tuple(e.model_copy(update={"event_id": f"{e.event_id}#{copy}"})
                       for e in batch.events)
        out.extend(encode_messages(batch.model_copy(update={"events": events})))
        copy += 1
    return out[:n_messages]


def aggregator_settings(
    bootstrap: str, features_topic: str, encode: EncodeSettings, folder: Path
) -> Settings:
    return load_settings(
        None,
        kafka={"bootstrap_servers": [bootstrap], "topic": "unused",
               "features_topic": features_topic,
               "group_id": f"bench-agg-{uuid.uuid4().hex[:8]}"},
        encode=encode.model_dump(mode="json", exclude_none=True),
        state={"snapshot_dir": str(folder)},
        web={"listen_address": f"127.0.0.1:{free_port()}"},
    )


def aggregate_once(settings: Settings, n_messages: int) -> float:
    """Wall time of one aggregator over the whole topic; checks it counted every event once."""
    app = App(settings, role="aggregate", max_events=n_messages)
    started = time.perf_counter()
    app.run()
    seconds = time.perf_counter() - started
    assert app.state is not None
    counted = sum(v.documents for v in app.state.version_counts() if v.field == "response")
    if counted != n_messages:
        raise AggregatorCountError(f"aggregator counted {counted} of {n_messages} events")
    return seconds


def aggregator_rate(
    cluster: KafkaCluster,
    source_topic: str,
    encode: EncodeSettings,
    n_messages: int,
    runs: int,
    folder: Path,
) -> dict[str, object]:
    """Median events/s of the aggregator over ``n_messages`` real features messages."""
    batch = unique_batch(cluster, source_topic)
    messages = cloned_messages(batch, n_messages)
    topic = cluster.create_topic(3, prefix="bench-agg")
    for i in range(0, len(messages), PRODUCE_CHUNK):
        cluster.produce_raw(topic, messages[i : i + PRODUCE_CHUNK])
    times = [
        aggregate_once(aggregator_settings(cluster.bootstrap, topic, encode, folder / f"run{r}"),
                       n_messages)
        for r in range(runs)
    ]
    wall = median(times)
    nnz = batch.response.indices.size / max(len(batch), 1)
    logger.info("aggregator: %d events in %.2fs (median of %d)", n_messages, wall, runs)
    return {
        "messages": n_messages,
        "distinct_source_events": len(batch),
        "mean_message_bytes": round(sum(len(v) for _, v in messages) / len(messages)),
        "mean_active_features_per_response": round(nnz, 1),
        "runs": runs,
        "s_per_run": [round(t, 3) for t in times],
        "median_s": round(wall, 3),
        "events_per_s": rate(n_messages, wall),
    }
