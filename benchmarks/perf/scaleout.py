"""Scale-out: events/s with 1, 2 and 3 ``saewatch encode`` processes and one ``saewatch aggregate``
on a 6-partition events topic, and the aggregator's own events/s on a filled features topic.

Per configuration (fresh topics and group): the aggregator and ``n`` encoders start as real
subprocesses (``python -m saewatch encode|aggregate --config.file``) and are waited for until
all answer ``/-/ready`` (model loaded, partitions assigned) — start-up and model load are not
timed. Then, ``--runs`` times, N real events (fresh ids each run) are published and the clock
runs from the first send until the aggregator's snapshot offsets (committed after each snapshot)
reach the end of the features topic, i.e. produce -> encode -> features topic -> state. After a
SIGTERM the aggregator's last snapshot is restored and must hold exactly N x runs events.

Each encoder gets ``max(1, cores // n)`` torch threads. On a 2-core machine encoding is CPU-bound,
so more encoders cannot be faster: this measures correctness and the overhead of the split, not
speed-up. The aggregator section replays the real codes (cloned under new event ids up to
``--agg-events``) from a features topic into an in-process ``App(role="aggregate")``.

Run::

    python -m benchmarks.perf.scaleout                  # default model + shipped SAE
    python -m benchmarks.perf.scaleout --quick          # tiny random model: a smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from kafka import KafkaProducer

from benchmarks.perf.aggregator import aggregator_rate
from benchmarks.perf.fleet import Fleet, RoleError, Topology, committed_total, wait_until
from benchmarks.perf.streams import (
    kafka_broker,
    loadavg,
    machine,
    median,
    pair_events,
    rate,
    run_measurement,
)
from saewatch.config import EncodeSettings, KafkaSettings, StateSettings
from saewatch.models import LLMEvent
from saewatch.source.producer import connect_producer, publish
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore
from tests.support.kafka import KafkaCluster

logger = logging.getLogger("benchmarks.perf.scaleout")

READY_TIMEOUT_S = 600.0
RUN_TIMEOUT_S = 900.0
NOTE = ("CPU-bound on this machine: every encoder shares the same cores, so more encoders "
        "cannot be faster; the figures show that the split is correct (every event counted "
        "exactly once) and what it costs, not a speed-up. On GPUs each encoder has its own.")


def relabel(events: list[LLMEvent], run: int) -> list[LLMEvent]:
    """The same events under ids unique to ``run`` (the aggregator drops repeated ids)."""
    return [e.model_copy(update={"event_id": f"{e.event_id}@run{run}"}) for e in events]


def scale_config(
    args: argparse.Namespace,
    cluster: KafkaCluster,
    encode: EncodeSettings,
    events: list[LLMEvent],
    n_encoders: int,
    folder: Path,
) -> tuple[dict[str, object], str]:
    """Runs of one configuration; its summary and the features topic it filled."""
    topology = Topology(
        bootstrap=cluster.bootstrap,
        events_topic=cluster.create_topic(args.partitions, prefix="bench-scale"),
        features_topic=cluster.create_topic(args.features_partitions, prefix="bench-features"),
        group=f"bench-scale-{n_encoders}-{os.getpid()}",
        encode=encode.model_dump(mode="json", exclude_none=True),
        batch_size=args.batch_size,
    )
    threads = max(1, (os.cpu_count() or 1) // n_encoders)
    folder.mkdir(parents=True)
    fleet = Fleet(topology, folder)
    producer = connect_producer(KafkaSettings(bootstrap_servers=[cluster.bootstrap]))
    try:
        fleet.start(n_encoders, threads)
        ready_s = fleet.wait_ready(READY_TIMEOUT_S)
        times = [one_run(cluster, fleet, producer, relabel(events, r)) for r in range(args.runs)]
    finally:
        producer.close()
        exit_codes = fleet.stop()
    published = sum(cluster.end_offsets(topology.features_topic).values())
    counted = counted_events(fleet.aggregator_snapshots)
    expected = len(events) * args.runs
    if counted != expected or any(exit_codes):
        raise RoleError(f"{n_encoders} encoders: state holds {counted} events, expected "
                        f"{expected}; exit codes {exit_codes}")
    wall = median([t for t, _ in times])
    return {
        "encoders": n_encoders,
        "torch_threads_per_encoder": threads,
        "startup_s": round(ready_s, 1),
        "s_per_run": [round(t, 2) for t, _ in times],
        "encoders_done_s_per_run": [round(t, 2) for _, t in times],
        "median_s": round(wall, 3),
        "events_per_s": rate(len(events), wall),
        "features_messages": published,
        "replayed_messages_dropped": published - expected,
        "events_counted": counted,
        "exactly_once": True,
        "restarts_without_partitions": fleet.restarts,
    }, topology.features_topic


def one_run(
    cluster: KafkaCluster, fleet: Fleet, producer: KafkaProducer, events: list[LLMEvent]
) -> tuple[float, float]:
    """Publish ``events``; seconds until encoders committed them and until state holds them."""
    topo = fleet.topology
    started = time.perf_counter()
    publish(events, producer, topo.events_topic, progress=False)
    target = sum(cluster.end_offsets(topo.events_topic).values())
    wait_until(lambda: committed_total(cluster, topo.group, topo.events_topic) >= target,
               fleet, RUN_TIMEOUT_S, poll_s=0.2)
    encoders_done = time.perf_counter() - started
    features = sum(cluster.end_offsets(topo.features_topic).values())
    wait_until(lambda: committed_total(cluster, topo.aggregate_group, topo.features_topic)
               >= features, fleet, RUN_TIMEOUT_S, poll_s=0.2)
    total = time.perf_counter() - started
    logger.info("%d events in %.2fs (encoders done at %.2fs)", len(events), total, encoders_done)
    return total, encoders_done


def counted_events(snapshots: Path) -> int:
    """Events the latest snapshot's state holds (response documents over all versions)."""
    latest = SnapshotStore(snapshots).load_latest()
    if latest is None:
        return 0
    state = MonitorState(StateSettings())
    state.restore(latest.state)
    return sum(v.documents for v in state.version_counts() if v.field == "response")


def measure(args: argparse.Namespace, encode: EncodeSettings, root: Path) -> dict[str, object]:
    events = pair_events(args.events)
    load_before = loadavg()
    configs: list[dict[str, object]] = []
    with kafka_broker() as bootstrap:
        cluster = KafkaCluster(bootstrap)
        try:
            features_topic = ""
            for n in args.encoders:
                summary, features_topic = scale_config(
                    args, cluster, encode, events, n, root / f"encoders{n}")
                configs.append(summary)
            aggregator = aggregator_rate(cluster, features_topic, encode, args.agg_events,
                                         args.agg_runs, root / "aggregator")
        finally:
            cluster.close()
    base = float(configs[0]["median_s"])  # type: ignore[arg-type]
    for c in configs:
        c["vs_one_encoder"] = round(base / float(c["median_s"]), 3)  # type: ignore[arg-type]
    return {
        "benchmark": "scaleout",
        "note": NOTE,
        "machine": machine() | {"loadavg_before": load_before, "loadavg_after": loadavg()},
        "encoder": {k: v for k, v in encode.model_dump(mode="json").items()
                    if k in ("model", "sae", "max_tokens_per_text", "max_tokens_per_batch")},
        "events_per_run": len(events),
        "runs": args.runs,
        "partitions": args.partitions,
        "features_partitions": args.features_partitions,
        "batch_size_events": args.batch_size,
        "configurations": configs,
        "aggregator": aggregator,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=32, help="events published per run (N)")
    p.add_argument("--runs", type=int, default=5, help="runs per configuration")
    p.add_argument("--encoders", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--features-partitions", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16, help="source.batch_size (events)")
    p.add_argument("--max-tokens-per-text", type=int, default=256)
    p.add_argument("--max-tokens-per-batch", type=int, default=8192)
    p.add_argument("--agg-events", type=int, default=20_000,
                   help="features messages the aggregator section replays")
    p.add_argument("--agg-runs", type=int, default=5)
    p.add_argument("--model", default=None, help="model directory (default: offline default)")
    p.add_argument("--sae", type=Path, default=None, help="sae-lens SAE directory")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny random model and SAE, 16 events, 1 run, 2k aggregated")
    p.add_argument("--json", type=Path, default=None, help="write the result here too")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.runs, args.batch_size = min(args.events, 16), 1, 8
        args.max_tokens_per_text = 32
        args.agg_events, args.agg_runs = min(args.agg_events, 2_000), min(args.agg_runs, 2)
    return args


def main(argv: list[str] | None = None) -> int:
    return run_measurement(parse_args(argv), measure, "saewatch-bench-scale-")


if __name__ == "__main__":
    raise SystemExit(main())
