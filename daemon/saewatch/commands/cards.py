"""``saewatch feature-cards`` and ``saewatch label-quality``: feature cards of an SAE from a
held-out corpus, and how well its labels predict where features fire."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from saewatch.config import Settings

logger = logging.getLogger(__name__)


def cmd_feature_cards(args: argparse.Namespace, settings: Settings) -> int:
    """Build a card per feature of the configured SAE (encode.sae, default: the shipped one)
    from AlpacaEval outputs it never saw in training: top-activating contexts with per-token
    activations, density, top tokens, NPMI neighbours and a label read off the contexts.
    Writes feature_cards.json.gz (default: beside the SAE) and, with --labels-out, a labels
    file carrying the context labels."""
    from saewatch.encode.exceptions import EncodeError
    from saewatch.training.card_commands import dumps, run_feature_cards

    try:
        result = run_feature_cards(settings.encode, args.tokens, args.output, args.labels_out,
                                   args.codes_cache)
    except EncodeError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    sys.stdout.write(dumps(result) + "\n")
    return 0


def cmd_label_quality(args: argparse.Namespace, settings: Settings) -> int:
    """Precision and recall of "the label says it fires here" against the feature firing
    (activation at its presence threshold), on held-out texts never used for labels, for
    random features; one result per --labels NAME=FILE."""
    from saewatch.encode.exceptions import EncodeError
    from saewatch.training.card_commands import dumps, run_label_quality

    labels = dict(_named(item) for item in args.labels)
    try:
        result = run_label_quality(settings.encode, args.tokens, labels, args.features,
                                   args.seed, args.codes_cache)
    except EncodeError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    sys.stdout.write(dumps(result) + "\n")
    return 0


def _named(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"saewatch: --labels takes NAME=FILE, not {item!r}")
    return name, Path(path)


def configure_feature_cards(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, default=300_000,
                        help="corpus tokens to read (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=None,
                        help="cards file (default: feature_cards.json.gz beside the SAE)")
    parser.add_argument("--labels-out", type=Path, default=None,
                        help="also write a labels file with the context labels")
    parser.add_argument("--codes-cache", type=Path, default=None,
                        help=".npz of token codes: read if present, else written")


def configure_label_quality(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", action="append", required=True, metavar="NAME=FILE",
                        help="a labels file to score (repeat to compare)")
    parser.add_argument("--tokens", type=int, default=100_000,
                        help="held-out tokens to read (default: %(default)s)")
    parser.add_argument("--features", type=int, default=50, help="random features scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codes-cache", type=Path, default=None,
                        help=".npz of token codes: read if present, else written")


COMMANDS = [
    ("feature-cards", cmd_feature_cards, "build feature cards (contexts, density, neighbours, "
     "labels) from a held-out corpus"),
    ("label-quality", cmd_label_quality, "measure how well labels predict where features fire"),
]
CONFIGURERS = {"feature-cards": configure_feature_cards, "label-quality": configure_label_quality}
