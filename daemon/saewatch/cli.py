"""Command line: ``saewatch <command>``, flags in the style of a Prometheus exporter.

Each command is a small function ``_cmd_<name>(args, settings) -> int`` registered in
:func:`build_parser`. The configuration is loaded and validated before any command runs; an
invalid configuration exits with status 2 and a message that says what to fix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from saewatch import __version__
from saewatch.config import Settings, load_settings
from saewatch.errors import ConfigError

if TYPE_CHECKING:
    from saewatch.models import LLMEvent
    from saewatch.source.base import Source

logger = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace, Settings], int]
EXIT_CONFIG = 2


def _cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    """Print the JSON Schema of an LLM event (the committed schemas/llm_event.schema.json)."""
    from saewatch.models import LLMEvent

    schema = LLMEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://saewatch.dev/schemas/llm_event.schema.json"
    sys.stdout.write(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    return 0


def _cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the configuration and print it (secrets masked) as JSON."""
    sys.stdout.write(settings.model_dump_json(indent=2) + "\n")
    return 0


# --- source stage: produce, export-events, consume ------------------------------------------


def _alpaca_events(args: argparse.Namespace) -> list[LLMEvent]:
    from saewatch.source.alpaca import load_alpaca

    return load_alpaca(
        args.alpaca,
        version=args.version_name,
        model_id=args.model_id,
        seed=args.seed,
        limit=args.limit,
    )


def _cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    """Publish events to the events topic (kafka.topic): a JSONL file of events, or an AlpacaEval
    model's responses from the shared data. Every event is acknowledged (acks=all)."""
    from saewatch.source.admin import ensure_topics
    from saewatch.source.exceptions import DatasetError, ReplayFileError, SourceError
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


def _cmd_export_events(args: argparse.Namespace, settings: Settings) -> int:
    """Write an AlpacaEval model's responses as JSONL events (to a file or standard output)."""
    from saewatch.source.exceptions import DatasetError
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


def _cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest only: poll the events topic (or replay a JSONL file: --file), validate,
    route invalid records to the dead-letter topic, commit. SIGTERM/SIGINT finish the batch in
    hand, commit and close. Ends with an accounting line: consumed, valid, invalid per reason,
    truncated."""
    import signal

    from saewatch.source.exceptions import SourceError
    from saewatch.source.ingest import ingest

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
    group = parser.add_argument_group("AlpacaEval data (../shared/data, or SAEWATCH_DATA_DIR)")
    group.add_argument(
        "--alpaca",
        metavar="MODEL",
        required=required,
        help="model whose outputs to use, e.g. gpt4_1106_preview (a file alpaca_eval/MODEL.json.gz)",
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


def _configure_produce(parser: argparse.ArgumentParser) -> None:
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


def _configure_export_events(parser: argparse.ArgumentParser) -> None:
    _configure_alpaca(parser, required=True)
    parser.add_argument(
        "--output", type=Path, default=None, help="JSONL file to write (default: standard output)"
    )


def _configure_consume(parser: argparse.ArgumentParser) -> None:
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


def _cmd_encode_file(args: argparse.Namespace, settings: Settings) -> int:
    """Encode events into sparse SAE codes: a JSONL file of events or an AlpacaEval model's
    outputs. Writes one JSON line of codes per event (--output) and prints a JSON summary
    (speed, sanity FVE/L0, most frequent features with labels)."""
    from saewatch.encode.commands import run_encode_file
    from saewatch.encode.exceptions import EncodeError

    try:
        with contextlib.ExitStack() as stack:
            out = None if args.output is None else stack.enter_context(args.output.open("w"))
            summary = run_encode_file(settings.encode, args.input, args.alpaca, out, args.limit)
    except EncodeError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["invalid_lines"] else 0


def _cmd_train_sae(args: argparse.Namespace, settings: Settings) -> int:
    """Train a TopK SAE on the model's hook activations over the shared AlpacaEval corpus
    (held-out models and instructions evaluated), saved with sae-lens save_model in fp16 with
    a training report. Defaults reproduce the shipped default SAE."""
    from saewatch.encode.model import parse_hook_name
    from saewatch.encode.train import TrainConfig
    from saewatch.encode.training_run import TrainSaeOptions, run_train_sae

    options = TrainSaeOptions(
        out_dir=args.out,
        work_dir=args.work_dir,
        model=settings.encode.model,
        gguf_file=settings.encode.gguf_file,
        hook=parse_hook_name(args.hook),
        train_tokens=args.tokens,
        held_out_tokens=args.held_out_tokens,
        max_tokens_per_text=settings.encode.max_tokens_per_text,
        precision=args.precision,
        train=TrainConfig(d_sae=args.d_sae, k=args.k, epochs=args.epochs, lr=args.lr),
    )
    report = run_train_sae(options)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


def _cmd_label_features(args: argparse.Namespace, settings: Settings) -> int:
    """Label every feature of the configured SAE (encode.sae, default: the shipped one) by its
    top activating tokens and contexts in the training corpus; writes a labels file
    (schemas/feature_labels.schema.json)."""
    from saewatch.encode.commands import run_label_features

    result = run_label_features(settings.encode, args.activations, args.tokens, args.output)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def _configure_encode_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, default=None, help="JSONL file of LLM events")
    parser.add_argument(
        "--alpaca", metavar="MODEL", default=None, help="encode an AlpacaEval model's outputs"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many events")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSONL file for the codes (default: none)"
    )


def _configure_train_sae(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="directory for the SAE")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("var/sae-work"), help="activation cache"
    )
    parser.add_argument("--hook", default="blocks.12.hook_resid_post", help="where to read")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="training tokens")
    parser.add_argument("--held-out-tokens", type=int, default=60_000)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32, help="active features per token (TopK)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="bf16",
        help="model precision while extracting activations (default: %(default)s)",
    )


def _configure_label_features(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, required=True, help="labels file to write")
    parser.add_argument(
        "--activations", type=Path, default=None, help=".npz activation cache of train-sae"
    )
    parser.add_argument(
        "--tokens", type=int, default=300_000, help="corpus tokens when no cache is given"
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=None,
        help="YAML configuration file; SAEWATCH_* environment variables override it.",
    )
    group.add_argument(
        "--log.level",
        dest="log_level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=None,
        help="Log level (default: from the configuration, INFO).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saewatch",
        description="Watch deployed LLMs: behavioural drift between model versions, "
        "explained in sparse-autoencoder features.",
    )
    parser.add_argument("--version", action="version", version=f"saewatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, help_text in _COMMANDS:
        cmd = sub.add_parser(name, help=help_text, description=func.__doc__)
        _add_common(cmd)
        configure = _CONFIGURERS.get(name)
        if configure is not None:
            configure(cmd)
        cmd.set_defaults(func=func)
    return parser


# name, function, one-line help. Stage commands register themselves here.
_COMMANDS: list[tuple[str, Command, str]] = [
    ("schema", _cmd_schema, "print the JSON Schema of an LLM event"),
    ("check-config", _cmd_check_config, "validate the configuration and print it"),
    ("encode-file", _cmd_encode_file, "encode events (JSONL or AlpacaEval) into SAE codes"),
    ("train-sae", _cmd_train_sae, "train a TopK SAE on the corpus (the default SAE's recipe)"),
    ("label-features", _cmd_label_features, "label SAE features from top activations"),
    ("produce", _cmd_produce, "publish events (JSONL or AlpacaEval) to the events topic"),
    ("export-events", _cmd_export_events, "write AlpacaEval responses as JSONL events"),
    ("consume", _cmd_consume, "ingest only: validate, dead-letter, commit, account"),
]
# Optional per-command argument definitions.
_CONFIGURERS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "encode-file": _configure_encode_file,
    "train-sae": _configure_train_sae,
    "label-features": _configure_label_features,
    "produce": _configure_produce,
    "export-events": _configure_export_events,
    "consume": _configure_consume,
}


def _register_groups() -> None:
    from saewatch.commands import daemon

    for group in (daemon,):
        _COMMANDS.extend(group.COMMANDS)
        _CONFIGURERS.update(group.CONFIGURERS)


_register_groups()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # kafka-python logs every connection and rebalance step at INFO; keep its warnings only.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config_file)
    except ConfigError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return EXIT_CONFIG
    _setup_logging(args.log_level or settings.log_level)
    try:
        return int(args.func(args, settings))
    except ConfigError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return EXIT_CONFIG
