"""``saewatch llm-labels``: labels by the optional LLM (``labels.llm``) from feature cards,
scored on held-out contexts and kept only where they pass."""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

from saewatch.config import Settings
from saewatch.errors import SaewatchError

logger = logging.getLogger(__name__)


def cmd_llm_labels(args: argparse.Namespace, settings: Settings) -> int:
    """Ask the LLM of labels.llm for a label per feature from its card's strongest contexts,
    score each label on held-out contexts (where the feature fires, and windows on which the
    encoder finds it absent) and write a labels file (for encode.labels_path) holding the
    cards' labels with the LLM's where it scored at least labels.llm.min_label_score."""
    llm = settings.labels.llm
    if llm is None:
        sys.stderr.write("saewatch: llm-labels needs labels.llm (base_url, model) in the "
                         "configuration\n")
        return 2
    from saewatch.encode.cards import cards_for_settings
    from saewatch.llm.client import ChatClient
    from saewatch.training.card_commands import load_encoder
    from saewatch.training.llm_labels import label_features, merged_labels, silent_pool, summary

    try:
        cards = cards_for_settings(settings.encode)
        if cards is None:
            sys.stderr.write("saewatch: no feature cards for the configured SAE: build them "
                             "with saewatch feature-cards, or set encode.cards_path\n")
            return 2
        rng = random.Random(args.seed)
        features = args.feature or rng.sample(range(cards.d_sae), min(args.features,
                                                                      cards.d_sae))
        encoder = load_encoder(settings.encode)
        pool = silent_pool(cards, encoder, rng)
        outcomes = label_features(cards, features, ChatClient(llm), llm, pool)
    except SaewatchError as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    if args.output is not None:
        labels = merged_labels(cards, outcomes, llm.model)
        args.output.write_text(labels.model_dump_json(indent=1))
    sys.stdout.write(json.dumps(summary(outcomes, args.output), indent=1) + "\n")
    return 0


def configure_llm_labels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", type=int, default=20,
                        help="random features to label (default: %(default)s)")
    parser.add_argument("--feature", type=int, action="append", default=None,
                        help="a feature to label (repeat; instead of --features)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None,
                        help="labels file to write (default: print the scores only)")


COMMANDS = [
    ("llm-labels", cmd_llm_labels,
     "labels by the LLM of labels.llm from feature cards, kept where they score"),
]
CONFIGURERS = {"llm-labels": configure_llm_labels}
