"""Command line: ``saewatch <command>``, flags in the style of a Prometheus exporter.

Commands are thin functions ``(args, settings) -> exit status``, grouped in
:mod:`saewatch.commands` (``ingest``, ``encoding``, ``daemon``) and registered here. The
configuration is loaded and validated before any command runs; an invalid configuration exits
with status 2 and a message that says what to fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from saewatch import __version__
from saewatch.config import Settings, load_settings
from saewatch.datasets import DatasetError
from saewatch.errors import ConfigError

if TYPE_CHECKING:
    pass

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
]
# Optional per-command argument definitions.
_CONFIGURERS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def _register_groups() -> None:
    from saewatch.commands import backtest, behaviour, cards, daemon, encoding, ingest, llm

    for group in (ingest, encoding, cards, daemon, backtest, behaviour, llm):
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
    except DatasetError as exc:  # a data folder or model name to fix: one line, no traceback
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
