"""An aggregator counts the codes of one encoder: another encoder's features are dead letters.

A rolling upgrade of the SAE on some encode replicas puts messages of two encoders on the features
topic. Their counts cannot be added; the aggregator used to stop on the first such batch (and
again after every restart). Now each foreign message is an invalid record with reason
``encoder``: in the dead-letter topic with its reason, counted in /metrics, nothing lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from saewatch.app import App
from saewatch.codec import encode_messages
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import T0
from tests.support.kafka import KafkaCluster

pytestmark = pytest.mark.kafka


def features(encoder_id: str, first: int, n: int) -> list[tuple[bytes, bytes]]:
    events = tuple(
        LLMEvent(event_id=f"{encoder_id}-{i}", timestamp=T0, model_id="bot", model_version="v1",
                 prompt=f"question {i}", response=f"answer {i}")
        for i in range(first, first + n))
    codes = SparseCodes.from_rows([[1, 5]] * n, [[0.5, 2.0]] * n, n_tokens=[4] * n)
    return encode_messages(FeatureBatch(encoder_id=encoder_id, d_sae=16, events=events,
                                        prompt=codes, response=codes))


def aggregate(cluster: KafkaCluster, topic: str, group: str, snapshots: Path,
              records: int) -> App:
    settings = cluster.settings(
        "llm-events-unused", group=group,
        kafka={"features_topic": topic},
        state={"snapshot_dir": str(snapshots)},
        diff={"interval_s": 0.2},
    )
    app = App(settings, registry=CollectorRegistry(), max_events=records, serve_http=False,
              role="aggregate")
    assert app.run() == 0
    return app


def test_features_of_a_second_encoder_are_dead_lettered_and_counted(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    topic = kafka_cluster.create_topic(partitions=1, prefix="features")
    # Interleaved: old encoder, new encoder, old encoder again.
    first = features("sae-old", 0, 5) + features("sae-new", 0, 3) + features("sae-old", 5, 4)
    kafka_cluster.produce_raw(topic, first)
    app = aggregate(kafka_cluster, topic, "agg-one", tmp_path / "snap", len(first))

    assert app.state is not None and app.state.encoder_id == "sae-old"
    counts = {(v.model_version, v.field): v.documents for v in app.state.version_counts()}
    assert counts == {("v1", "prompt"): 9, ("v1", "response"): 9}
    get = app.registry.get_sample_value
    assert get("saewatch_events_invalid_total", {"reason": "encoder"}) == 3
    assert get("saewatch_events_processed_total") == 9
    assert get("saewatch_processing_errors_total", {"stage": "source"}) == 3
    letters = kafka_cluster.read_topic(f"{topic}.dlq")
    assert sorted(r.value for r in letters) == sorted(v for _, v in first[5:8])
    reasons = {dict(r.headers)["saewatch.error.reason"] for r in letters}
    assert reasons == {b"encoder"}
    message = dict(letters[0].headers)["saewatch.error.message"].decode()
    assert "'sae-new'" in message and "state.snapshot_dir" in message

    # After a restart the snapshot's encoder holds, even when the new one's message comes first.
    more = features("sae-new", 3, 2) + features("sae-old", 9, 1)
    kafka_cluster.produce_raw(topic, more)
    again = aggregate(kafka_cluster, topic, "agg-one", tmp_path / "snap", len(more))
    assert again.state is not None and again.state.encoder_id == "sae-old"
    assert again.state.tally.processed == 10 and again.state.tally.invalid == 5
    latest = SnapshotStore(tmp_path / "snap", 3).load_latest()
    assert latest is not None and latest.offsets == {(topic, 0): len(first) + len(more)}
