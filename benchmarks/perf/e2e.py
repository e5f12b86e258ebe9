"""End to end through Kafka: events/s from the events topic into state, vs the encoder alone.

N real AlpacaEval events are published once (``saewatch.source.producer.publish``) to an events
topic of a real broker. Then, ``--runs`` times and side by side in one process:

* ``e2e``: the real daemon (:class:`saewatch.app.App`, role ``run``: Kafka source, encoder, state,
  diff timer, checkpoints, HTTP server) as a fresh consumer group with a fresh snapshot folder,
  until it has handled all N records; wall time of ``App.run`` (group join, every batch, the
  final forced checkpoint), the model being loaded beforehand and shared (load time excluded).
  Every run is checked: the final snapshot's offsets equal the topic's end offsets and the state
  counted every event exactly once;
* ``encoder``: ``SAEEncoder.encode`` on the same events in batches of ``source.batch_size``, the
  same encoder object, the same token budget;
* with ``--look-ahead``, also ``e2e_ahead``: the daemon again with the same encoder looking
  ahead (:meth:`SAEEncoder.with_look_ahead`: the next full poll tokenized in a thread while the
  current one runs; ``encode.look_ahead: on``), checked the same way.

The two alternate (which goes first flips each run), so a load change on the shared machine hits
both. Reported: medians, events/s, and ``e2e_vs_encoder`` = encoder time / e2e time (1.0 means
Kafka, state, diffs and snapshots cost nothing on top of encoding).

Run::

    python -m benchmarks.perf.e2e                       # default model + shipped SAE, N=64
    python -m benchmarks.perf.e2e --quick               # tiny random model: a smoke run
    python -m benchmarks.perf.e2e --sae /path/to/sae --events 200 --runs 7 --json out.json
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.perf.streams import (
    describe_encoder,
    kafka_broker,
    loadavg,
    machine,
    median,
    pair_events,
    rate,
    run_measurement,
    text_lengths,
)
from saewatch.app import App
from saewatch.config import EncodeSettings, Settings, load_settings
from saewatch.encode.encoder import SAEEncoder
from saewatch.models import LLMEvent
from saewatch.source.producer import connect_producer, publish
from saewatch.state.snapshot import SnapshotStore
from tests.support.kafka import KafkaCluster, free_port

logger = logging.getLogger("benchmarks.perf.e2e")


STALLED_AFTER_S = 60.0
MAX_ATTEMPTS = 3


class AccountingError(RuntimeError):
    """A run did not account for every event exactly once (a bug, not a slow machine)."""


@dataclass(frozen=True)
class RunTimes:
    e2e_s: float
    encoder_s: float
    restarts: int = 0
    e2e_ahead_s: float | None = None


def daemon_settings(
    bootstrap: str, topic: str, encode: EncodeSettings, batch_size: int, snapshot_dir: Path
) -> Settings:
    """The daemon's configuration for one run: a fresh group, its own snapshots and port."""
    return load_settings(
        None,
        kafka={"bootstrap_servers": [bootstrap], "topic": topic,
               "group_id": f"bench-e2e-{uuid.uuid4().hex[:8]}"},
        source={"batch_size": batch_size, "poll_timeout_s": 0.2},
        encode=encode.model_dump(),
        state={"snapshot_dir": str(snapshot_dir)},
        web={"listen_address": f"127.0.0.1:{free_port()}"},
    )


def run_daemon(
    settings: Settings, encoder: SAEEncoder, n_records: int
) -> tuple[float, App, Settings, int]:
    """``App.run`` over ``n_records`` records with a preloaded encoder: its wall time, the app,
    the settings it ran with and how many attempts were abandoned.

    A daemon without partitions ``STALLED_AFTER_S`` after its start is stopped and run again as a new
    group (counted in ``restarts``): kafka-python sometimes joins before it has the topic's
    metadata and gets nothing assigned for minutes (dpkp/kafka-python#2377).
    """
    for attempt in range(MAX_ATTEMPTS):
        app = App(settings, encoder_factory=lambda: encoder, max_events=n_records)
        watchdog = threading.Timer(STALLED_AFTER_S, _stop_if_unassigned, args=(app,))
        watchdog.start()
        started = time.perf_counter()
        try:
            app.run()
        finally:
            watchdog.cancel()
        if app.handled >= n_records:
            return time.perf_counter() - started, app, settings, attempt
        logger.warning("attempt %d: no partitions assigned after %.0fs; again as a new group",
                       attempt + 1, STALLED_AFTER_S)
        settings = _fresh(settings, attempt)
    raise AccountingError(f"no partitions assigned in {MAX_ATTEMPTS} attempts")


def _stop_if_unassigned(app: App) -> None:
    source = app.readiness.source
    if app.handled == 0 and source is not None and not source.assignment():
        app.stop()


def _fresh(settings: Settings, attempt: int) -> Settings:
    kafka = settings.kafka.model_copy(update={"group_id": f"{settings.kafka.group_id}-{attempt}"})
    state = settings.state.model_copy(
        update={"snapshot_dir": settings.state.snapshot_dir / f"attempt{attempt}"})
    return settings.model_copy(update={"kafka": kafka, "state": state})


def check_accounting(app: App, settings: Settings, ends: dict[int, int], n_events: int) -> None:
    """The final snapshot's offsets are the end offsets and state counted each event once."""
    latest = SnapshotStore(settings.state.snapshot_dir).load_latest()
    if latest is None:
        raise AccountingError("the daemon wrote no snapshot")
    topic = settings.kafka.topic
    offsets = {p: o for (t, p), o in latest.offsets.items() if t == topic}
    if offsets != ends:
        raise AccountingError(f"snapshot offsets {offsets} != end offsets {ends}")
    assert app.state is not None
    counted = sum(v.documents for v in app.state.version_counts() if v.field == "response")
    if counted != n_events:
        raise AccountingError(f"state counted {counted} events, {n_events} were produced")


def encode_only(encoder: SAEEncoder, events: Sequence[LLMEvent], batch_size: int) -> float:
    """Wall time of ``encoder.encode`` over ``events`` in daemon-sized batches."""
    started = time.perf_counter()
    for i in range(0, len(events), batch_size):
        encoder.encode(events[i : i + batch_size])
    return time.perf_counter() - started


def measure(args: argparse.Namespace, encode: EncodeSettings, root: Path) -> dict[str, object]:
    events = pair_events(args.events)
    started = time.perf_counter()
    encoder = SAEEncoder.from_settings(encode)
    load_s = time.perf_counter() - started
    encoder.encode(events[: args.batch_size])  # warm-up (and the one-off sanity check)
    load_before = loadavg()
    with kafka_broker() as bootstrap:
        cluster = KafkaCluster(bootstrap)
        try:
            topic = cluster.create_topic(args.partitions, prefix="bench-e2e")
            base = daemon_settings(bootstrap, topic, encode, args.batch_size, root / "unused")
            producer = connect_producer(base.kafka)
            try:
                sent = publish(events, producer, topic, progress=False)
            finally:
                producer.close()
            ends = cluster.end_offsets(topic)
            runs = [
                one_run(args, bootstrap, topic, encode, encoder, events, ends, root / f"run{i}",
                        encoder_first=bool(i % 2))
                for i in range(args.runs)
            ]
        finally:
            cluster.close()
    return summarize(args, encoder, encode, events, runs, load_s, sent.seconds, load_before)


def one_run(
    args: argparse.Namespace,
    bootstrap: str,
    topic: str,
    encode: EncodeSettings,
    encoder: SAEEncoder,
    events: list[LLMEvent],
    ends: dict[int, int],
    folder: Path,
    *,
    encoder_first: bool,
) -> RunTimes:
    settings = daemon_settings(bootstrap, topic, encode, args.batch_size, folder)
    enc_s = encode_only(encoder, events, args.batch_size) if encoder_first else 0.0
    e2e_s, app, settings, restarts = run_daemon(settings, encoder, len(events))
    check_accounting(app, settings, ends, len(events))
    ahead_s = None
    if args.look_ahead:
        ahead = encoder.with_look_ahead()
        settings = daemon_settings(bootstrap, topic, encode, args.batch_size, folder / "ahead")
        ahead_s, app, settings, more = run_daemon(settings, ahead, len(events))
        ahead.close()
        check_accounting(app, settings, ends, len(events))
        restarts += more
    if not encoder_first:
        enc_s = encode_only(encoder, events, args.batch_size)
    logger.info("run: e2e %.2fs, encoder %.2fs (ratio %.3f), looking ahead %s", e2e_s, enc_s,
                enc_s / e2e_s, "-" if ahead_s is None else f"{ahead_s:.2f}s")
    return RunTimes(e2e_s=e2e_s, encoder_s=enc_s, restarts=restarts, e2e_ahead_s=ahead_s)


def summarize(
    args: argparse.Namespace,
    encoder: SAEEncoder,
    encode: EncodeSettings,
    events: list[LLMEvent],
    runs: list[RunTimes],
    load_s: float,
    produce_s: float,
    load_before: list[float],
) -> dict[str, object]:
    n = len(events)
    e2e = median([r.e2e_s for r in runs])
    enc = median([r.encoder_s for r in runs])
    lengths = text_lengths(encoder, events)
    described = describe_encoder(encoder, encode)
    tokens = n * lengths.per_event
    flops = described["flops_per_token"]["total"]  # type: ignore[index]
    return {
        "benchmark": "e2e",
        "machine": machine() | {"loadavg_before": load_before, "loadavg_after": loadavg()},
        "encoder": described,
        "events": n,
        "partitions": args.partitions,
        "batch_size_events": args.batch_size,
        "mean_tokens": {"prompt": lengths.prompt, "response": lengths.response,
                        "per_event": round(lengths.per_event, 1)},
        "runs": len(runs),
        "model_load_s": round(load_s, 2),
        "produce_s": round(produce_s, 3),
        "e2e_s_median": round(e2e, 3),
        "encoder_s_median": round(enc, 3),
        "e2e_events_per_s": rate(n, e2e),
        "encoder_events_per_s": rate(n, enc),
        "e2e_tokens_per_s": round(tokens / e2e, 1),
        "encoder_tokens_per_s": round(tokens / enc, 1),
        # What the CPU sustains inside the encoder: calibrates the capacity model's FLOP rate.
        "encoder_effective_gflops": round(tokens * flops / enc / 1e9, 2),
        "e2e_vs_encoder": round(enc / e2e, 3),
        "e2e_vs_encoder_per_run": [round(r.encoder_s / r.e2e_s, 3) for r in runs],
        "e2e_s_per_run": [round(r.e2e_s, 3) for r in runs],
        "encoder_s_per_run": [round(r.encoder_s, 3) for r in runs],
        "all_events_accounted": True,  # check_accounting raised otherwise
        **_look_ahead_figures(runs, enc),
        "restarts_without_partitions": sum(r.restarts for r in runs),
    }


def _look_ahead_figures(runs: list[RunTimes], encoder_s: float) -> dict[str, object]:
    ahead = [r.e2e_ahead_s for r in runs if r.e2e_ahead_s is not None]
    if not ahead:
        return {}
    return {
        "e2e_ahead_s_median": round(median(ahead), 3),
        "e2e_ahead_vs_encoder": round(encoder_s / median(ahead), 3),
        "e2e_ahead_vs_e2e_per_run": [round(r.e2e_s / a, 3) for r, a in zip(runs, ahead,
                                                                          strict=True)],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=64, help="AlpacaEval events produced (N)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32, help="source.batch_size (events)")
    p.add_argument("--max-tokens-per-text", type=int, default=256)
    p.add_argument("--max-tokens-per-batch", type=int, default=8192)
    p.add_argument("--model", default=None, help="model directory (default: offline default)")
    p.add_argument("--sae", type=Path, default=None, help="sae-lens SAE directory")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny random model and SAE, 24 events, 2 runs")
    p.add_argument("--json", type=Path, default=None, help="write the result here too")
    p.add_argument("--look-ahead", action="store_true",
                   help="also run the daemon with the encoder looking ahead (e2e_ahead)")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.runs = min(args.events, 24), min(args.runs, 2)
        args.batch_size, args.max_tokens_per_text = 8, 32
    return args


def main(argv: list[str] | None = None) -> int:
    return run_measurement(parse_args(argv), measure, "saewatch-bench-e2e-")


if __name__ == "__main__":
    raise SystemExit(main())
