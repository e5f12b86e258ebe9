"""The aggregator's own speed: events/s of ``App(role="aggregate")`` reading a filled features topic.

The codes are real: the features messages that ``saewatch encode`` published during the
scale-out runs (:func:`aggregator_rate`), or, run on its own (``python -m
benchmarks.perf.aggregator``), the shipped encoder's presence-thresholded codes of real sample
events (:mod:`benchmarks.perf.real_codes`), de-duplicated and cloned under new event ids until
there are ``n_messages`` (the aggregator drops repeated ids, so clones need their own). They are
written to a fresh features topic, keyed by ``model_id`` as the encoders key them; each run then
reads the whole topic as a fresh consumer group with fresh state: Kafka fetch, JSON decode,
state update, diff timer, and the final forced checkpoint, all timed. Run on its own, each run
first counts ``--warm`` events untimed (past the clusters' one-off warm-up: a fresh state fits
its projection on its first 2,000 events) and times a second aggregator that restores that
state and reads the rest (restore and group join included).

    python -m benchmarks.perf.aggregator --messages 20000 --runs 5 --json out.json
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from benchmarks.perf.streams import median
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


def _counted(app: App) -> int:
    assert app.state is not None
    return sum(v.documents for v in app.state.version_counts() if v.field == "response")


def aggregate_once(settings: Settings, total: int, warm: int = 0) -> tuple[float, float, int]:
    """Wall and CPU time (this process: the loop and Kafka's IO thread) of one aggregator over
    the topic's ``total`` messages, and how many it timed; checks it counted each once.

    With ``warm``, a first aggregator (not timed) counts the topic's first ~``warm`` events
    (whole polls) and checkpoints; the timed one restores that state and counts the rest: the
    steady state, past the clusters' one-off warm-up (``state.cluster_warmup_events``).
    """
    before = 0
    if warm:
        first = App(settings, role="aggregate", max_events=warm)
        first.run()
        before = _counted(first)
    app = App(settings, role="aggregate", max_events=total - before)
    started, cpu = time.perf_counter(), time.process_time()
    app.run()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    counted = _counted(app)
    if counted != total:
        raise AggregatorCountError(f"aggregator counted {counted} of {total} events")
    return seconds, cpu, total - before


def aggregator_rate(
    cluster: KafkaCluster,
    source_topic: str,
    encode: EncodeSettings,
    n_messages: int,
    runs: int,
    folder: Path,
) -> dict[str, object]:
    """Median events/s of the aggregator over ``n_messages`` real features messages."""
    return batch_rate(cluster, unique_batch(cluster, source_topic), encode, n_messages, runs,
                      folder)


def batch_rate(
    cluster: KafkaCluster,
    batch: FeatureBatch,
    encode: EncodeSettings,
    n_messages: int,
    runs: int,
    folder: Path,
    warm: int = 0,
) -> dict[str, object]:
    """:func:`aggregator_rate` of the events of ``batch``, cloned to ``n_messages`` (plus
    ``warm`` counted first, untimed: :func:`aggregate_once`)."""
    messages = cloned_messages(batch, n_messages + warm)
    topic = cluster.create_topic(3, prefix="bench-agg")
    for i in range(0, len(messages), PRODUCE_CHUNK):
        cluster.produce_raw(topic, messages[i : i + PRODUCE_CHUNK])
    measured = [
        aggregate_once(aggregator_settings(cluster.bootstrap, topic, encode, folder / f"run{r}"),
                       n_messages + warm, warm)
        for r in range(runs)
    ]
    rates = [n / t for t, _, n in measured]
    times = [t for t, _, _ in measured]
    wall = median(times)
    nnz = batch.response.indices.size / max(len(batch), 1)
    logger.info("aggregator: %d events in %.2fs (median of %d)", n_messages, wall, runs)
    return {
        "messages": n_messages,
        "warm_up_messages": warm,
        "distinct_source_events": len(batch),
        "mean_message_bytes": round(sum(len(v) for _, v in messages) / len(messages)),
        "mean_active_features_per_response": round(nnz, 1),
        "runs": runs,
        "s_per_run": [round(t, 3) for t in times],
        "timed_events_per_run": [n for _, _, n in measured],
        "median_s": round(wall, 3),
        "events_per_s": round(median(rates), 2),
        "cpu_s_per_run": [round(c, 3) for _, c, _ in measured],
        "events_per_cpu_s": round(median([n / c for _, c, n in measured]), 2),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys
    import tempfile

    from benchmarks.perf.real_codes import load_real_codes, real_batches
    from benchmarks.perf.streams import kafka_broker

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--real-events", type=int, default=512)
    p.add_argument("--warm", type=int, default=2_560,
                   help="events counted (untimed) before the timed ones: past the clusters' "
                        "warm-up; 0 times a fresh aggregator from its first event")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    real = load_real_codes(args.real_events)
    batch = real_batches(real, True, 1, len(real.events))[0]
    with kafka_broker() as bootstrap, tempfile.TemporaryDirectory() as folder:
        cluster = KafkaCluster(bootstrap)
        try:
            result = batch_rate(cluster, batch, EncodeSettings(), args.messages, args.runs,
                                Path(folder), args.warm)
        finally:
            cluster.close()
    result["codes"] = "shipped SAE, presence thresholds (real sample events)"
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
