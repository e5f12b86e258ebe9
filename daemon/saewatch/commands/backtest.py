"""``saewatch backtest``: when would an alert have fired on this file of events?"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from saewatch.config import Settings

if TYPE_CHECKING:
    from saewatch.encode.base import Encoder

logger = logging.getLogger(__name__)

EXIT_INPUT = 2  # as for an invalid configuration: the input is to fix, nothing ran


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Replay a JSONL file of events through encode, state and diff with the configured
    settings, looking whenever every side of a comparison has grown by --every documents (the
    clock is the events' own timestamps). Writes JSON (docs/backtest.schema.json): per-look
    verdicts, the first look whose verdict is drift, and the final findings. Codes are cached by
    text under the user cache, so a rerun with other diff.* settings does not encode again."""
    from saewatch.backtest import BacktestInputError, BacktestOptions, run_backtest
    from saewatch.backtest.replay import read_file

    if args.every < 1:
        sys.stderr.write("saewatch: backtest: --every must be at least 1\n")
        return EXIT_INPUT
    options = BacktestOptions(path=args.events, every=args.every,
                              cache_root=None if args.no_cache else args.cache_dir or _cache_root())
    try:
        read = read_file(settings, args.events)  # a bad file fails here, before a model loads
        encoder = _encoder(settings)
        result = run_backtest(settings, options, read, encoder, _labels(settings, encoder))
    except BacktestInputError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return EXIT_INPUT
    text = result.model_dump_json(indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        first = result.first_drift
        sys.stderr.write(f"wrote {len(result.looks)} looks to {args.out}; first drift: "
                         f"{'none' if first is None else f'look {first.index}'}\n")
    return 0


def _cache_root() -> Path:
    from saewatch.encode.default import cache_dir

    return cache_dir() / "backtest"


def _encoder(settings: Settings) -> Encoder:
    from saewatch.encode.encoder import SAEEncoder

    return SAEEncoder.from_settings(settings.encode)


def _labels(settings: Settings, encoder: Encoder) -> dict[int, str]:
    """Short labels per feature, by the encode stage's own rule (as the daemon does)."""
    from saewatch.encode.labels import labels_for_settings

    labels = labels_for_settings(settings.encode, encoder.d_sae, encoder.encoder_id)
    return {} if labels is None else {f.feature: f.label for f in labels.features if f.label}


def configure_backtest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", type=Path, metavar="EVENTS.jsonl",
                        help="JSONL file of events (schemas/llm_event.schema.json)")
    parser.add_argument("--every", type=int, default=50, metavar="N",
                        help="look whenever every side of a comparison has grown by N "
                        "documents (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="write the JSON here (default: standard output)")
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="code cache folder (default: the user cache's saewatch/backtest)")
    parser.add_argument("--no-cache", action="store_true",
                        help="encode every text, neither reading nor writing the code cache")


COMMANDS = [
    ("backtest", cmd_backtest, "replay a file of events: when would drift have been flagged"),
]
CONFIGURERS = {"backtest": configure_backtest}
