"""``saewatch produce``, ``export-events`` and ``consume``: getting events in and accounted."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from saewatch.config import Settings
from saewatch.errors import ConfigError

if TYPE_CHECKING:
    from saewatch.models import LLMEvent
    from saewatch.source.base import Source

logger = logging.getLogger(__name__)


def _alpaca_events(args: argparse.Namespace) -> list[LLMEvent]:
    from saewatch.datasets import alpaca_events

    return alpaca_events(
        args.alpaca,
        version=args.version_name,
        model_id=args.model_id,
        seed=args.seed,
        limit=args.limit,
    )


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    """Publish events to the events topic (kafka.topic): a JSONL file of events, or an AlpacaEval
    model's responses from the shared data. Every event is acknowledged (acks=all)."""
    from saewatch.datasets import DatasetError
    from saewatch.source.admin import ensure_topics
    from saewatch.source.exceptions import ReplayFileError, SourceError
    from saewatch.source.file import read_events
    from saewatch.source.producer import connect_producer, publish

    if (args.alpaca is None) == (args.file is None):
        raise ConfigError("produce: give exactly one of --alpaca MODEL or --file PATH")
    topic = args.topic or settings.kafka.topic
    try:
        events = _alpaca_events(args) if args.alpaca else list(read_events(args.file))
    except (DatasetError, ReplayFileError) as exc:
        raise ConfigError(str(exc)) from exc
    try:
        if args.partitions:
            ensure_topics(settings.kafka, {topic: args.partitions}, timeout_s=args.connect_timeout)
        producer = connect_producer(settings.kafka, timeout_s=args.connect_timeout)
        try:
            result = publish(
                events,
                producer,
                topic,
                key_by=args.key_by,
                total=len(events),
                progress=not args.no_progress,
            )
        finally:
            producer.close()
    except SourceError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    parts = " ".join(f"[{p}]={n}" for p, n in sorted(result.per_partition.items()))
    sys.stdout.write(f"produced {result.sent} events to {topic} {parts}\n")
    return 0


def cmd_export_events(args: argparse.Namespace, settings: Settings) -> int:
    """Write an AlpacaEval model's responses as JSONL events (to a file or standard output)."""
    from saewatch.datasets import DatasetError
    from saewatch.source.file import write_events

    try:
        events = _alpaca_events(args)
    except DatasetError as exc:
        raise ConfigError(str(exc)) from exc
    if args.output is None:
        write_events(events, sys.stdout)
    else:
        with Path(args.output).open("w", encoding="utf-8") as out:
            n = write_events(events, out)
        sys.stderr.write(f"wrote {n} events to {args.output}\n")
    return 0


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest only: poll the events topic (or replay a JSONL file: --file), validate,
    route invalid records to the dead-letter topic, commit. SIGTERM/SIGINT finish the batch in
    hand, commit and close. Ends with an accounting line: consumed, valid, invalid per reason,
    truncated."""
    import signal

    from saewatch.consume import ingest
    from saewatch.source.exceptions import SourceError

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        logger.info("signal %d: finishing the batch in hand, then committing", signum)
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl+C stops at once

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    kafka = settings.kafka.model_copy(
        update={k: v for k, v in (("topic", args.topic), ("group_id", args.group)) if v}
    )
    reading = settings.source
    if args.file is not None:
        reading = reading.model_copy(update={"kind": "file", "path": args.file})
    settings = settings.model_copy(update={"kafka": kafka, "source": reading})
    try:
        with _open_source(settings, stop, args.connect_timeout) as source:
            result = ingest(
                source,
                stop,
                batch_size=settings.source.batch_size,
                poll_timeout_s=settings.source.poll_timeout_s,
                max_records=args.max_records,
                idle_exit_s=args.idle_exit,
            )
            stats = source.stats  # type: ignore[attr-defined]
    except SourceError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    sys.stdout.write(f"{stats.summary()} stopped_by={result.stopped_by!r}\n")
    return 0


def _open_source(
    settings: Settings, stop: threading.Event, connect_timeout: float | None
) -> Source:
    if settings.source.kind == "file":
        from saewatch.source.file import FileSource

        return FileSource(settings)
    from saewatch.source.kafka import KafkaSource

    return KafkaSource(settings, stop=stop, connect_timeout_s=connect_timeout)


def _configure_alpaca(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group(
        "AlpacaEval data ($SAEWATCH_DATA_DIR, else the shipped sample: claude-2.1, "
        "claude-2.1_concise, NullModel)")
    group.add_argument(
        "--alpaca",
        metavar="MODEL",
        required=required,
        help="model whose outputs to use, e.g. claude-2.1 (a file alpaca_eval/MODEL.json.gz)",
    )
    group.add_argument(
        "--version",
        dest="version_name",
        metavar="NAME",
        default=None,
        help="model_version of the events (default: the model's name)",
    )
    group.add_argument(
        "--model-id", default="alpaca-eval", help="model_id of the events (default: %(default)s)"
    )
    group.add_argument("--limit", type=int, default=None, help="at most this many events")
    group.add_argument("--seed", type=int, default=None, help="shuffle the prompts with this seed")


def _configure_kafka_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kafka")
    group.add_argument("--topic", default=None, help="topic (default: kafka.topic)")
    group.add_argument(
        "--connect-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up if no broker answers within this time (default: keep retrying)",
    )


def configure_produce(parser: argparse.ArgumentParser) -> None:
    _configure_alpaca(parser, required=False)
    parser.add_argument("--file", type=Path, default=None, help="JSONL file of events to publish")
    _configure_kafka_target(parser)
    parser.add_argument(
        "--partitions",
        type=int,
        default=None,
        metavar="N",
        help="create the topic with N partitions if it does not exist",
    )
    parser.add_argument(
        "--key-by",
        choices=["event_id", "model_id"],
        default="event_id",
        help="message key (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def configure_export_events(parser: argparse.ArgumentParser) -> None:
    _configure_alpaca(parser, required=True)
    parser.add_argument(
        "--output", type=Path, default=None, help="JSONL file to write (default: standard output)"
    )


def configure_consume(parser: argparse.ArgumentParser) -> None:
    _configure_kafka_target(parser)
    parser.add_argument(
        "--file",
        type=Path,
        default=None,
        help="replay this JSONL file instead of Kafka (same as source.kind=file, source.path)",
    )
    parser.add_argument("--group", default=None, help="consumer group (default: kafka.group_id)")
    parser.add_argument(
        "--max-records",
        type=int,
        default=None,
        metavar="N",
        help="stop after N records (valid + invalid)",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop when nothing arrived for this long (default: run until signalled)",
    )


# --- encode stage: encode-file, train-sae, label-features -------------------------------------


COMMANDS = [
    ("produce", cmd_produce, "publish events (JSONL or AlpacaEval) to the events topic"),
    ("export-events", cmd_export_events, "write AlpacaEval responses as JSONL events"),
    ("consume", cmd_consume, "ingest only: validate, dead-letter, commit, account"),
]
CONFIGURERS = {
    "produce": configure_produce,
    "export-events": configure_export_events,
    "consume": configure_consume,
}
