"""``saewatch encode-file``, ``train-sae``, ``label-features`` and ``calibrate-thresholds``:
the encoder's tools."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from saewatch.config import Settings

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def cmd_encode_file(args: argparse.Namespace, settings: Settings) -> int:
    """Encode events into sparse SAE codes: a JSONL file of events or an AlpacaEval model's
    outputs. Writes one JSON line of codes per event (--output) and prints a JSON summary
    (speed, sanity FVE/L0, most frequent features with labels)."""
    from saewatch.datasets import alpaca_events
    from saewatch.encode.exceptions import EncodeError
    from saewatch.source.exceptions import ReplayFileError
    from saewatch.source.file import read_events
    from saewatch.training.commands import run_encode_file

    if (args.input is None) == (args.alpaca is None):
        sys.stderr.write("saewatch: give exactly one of --input FILE.jsonl and --alpaca MODEL\n")
        return 1
    invalid: list[int] = []

    def skipped(number: int, reason: str) -> None:
        logger.error("%s:%d: invalid event, skipped: %s", args.input, number, reason)
        invalid.append(number)

    try:
        if args.input is not None and not Path(args.input).is_file():
            raise EncodeError(f"input file {args.input} does not exist")
        events = (read_events(args.input, on_invalid=skipped) if args.input is not None
                  else alpaca_events(args.alpaca))
        with contextlib.ExitStack() as stack:
            out = None if args.output is None else stack.enter_context(args.output.open("w"))
            summary = run_encode_file(settings.encode, events, out, args.limit, invalid)
    except (EncodeError, ReplayFileError) as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["invalid_lines"] else 0


def cmd_train_sae(args: argparse.Namespace, settings: Settings) -> int:
    """Train a TopK SAE on the model's hook activations over the shared AlpacaEval corpus
    (held-out models and instructions evaluated), saved with sae-lens save_model in fp16 with
    a training report. Defaults reproduce the shipped default SAE."""
    from saewatch.encode.model import parse_hook_name
    from saewatch.training.run import TrainSaeOptions, run_train_sae
    from saewatch.training.train import TrainConfig

    options = TrainSaeOptions(
        out_dir=args.out,
        work_dir=args.work_dir,
        model=settings.encode.model,
        gguf_file=settings.encode.gguf_file,
        hook=parse_hook_name(args.hook),
        train_tokens=args.tokens,
        held_out_tokens=args.held_out_tokens,
        max_tokens_per_text=args.max_tokens_per_text or settings.encode.max_tokens_per_text,
        precision=args.precision,
        train=TrainConfig(d_sae=args.d_sae, k=args.k, epochs=args.epochs, lr=args.lr),
    )
    report = run_train_sae(options)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_label_features(args: argparse.Namespace, settings: Settings) -> int:
    """Label every feature of the configured SAE (encode.sae, default: the shipped one) by its
    top activating tokens and contexts in the training corpus; writes a labels file
    (schemas/feature_labels.schema.json)."""
    from saewatch.training.commands import run_label_features

    result = run_label_features(settings.encode, args.activations, args.tokens, args.output)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_calibrate_thresholds(args: argparse.Namespace, settings: Settings) -> int:
    """Calibrate per-feature presence thresholds for the configured SAE (or --sae DIR) on a
    reference corpus (default: the shipped demo sample's real models; or --corpus, a JSONL file of events):
    t_j = rho * the 99.9th percentile of feature j's nonzero token activations, one rho making
    the median document keep --target-present features. Writes presence_thresholds.json
    (default: beside the SAE, where encode.presence_thresholds: auto finds it) and prints what
    a document keeps per field without and with them."""
    from saewatch.encode.exceptions import EncodeError
    from saewatch.source.exceptions import ReplayFileError
    from saewatch.source.file import read_events
    from saewatch.training.calibration import run_calibrate_thresholds, sample_corpus

    try:
        if args.corpus is not None:
            events, corpus = list(read_events(args.corpus)), args.corpus.name
        else:
            events, corpus = sample_corpus()
        if args.limit is not None:
            events = events[: args.limit]
        fields = None if args.fit_on == "all" else [args.fit_on]
        result = run_calibrate_thresholds(settings.encode, events, f"{corpus}, {len(events)} "
                                          "events", args.target_present, args.out,
                                          sae_dir=args.sae, fit_fields=fields)
    except (EncodeError, ReplayFileError) as exc:
        sys.stderr.write(f"saewatch: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def configure_calibrate_thresholds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sae", type=Path, default=None,
                        help="sae-lens SAE folder (default: encode.sae, else the shipped one)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="JSONL file of events (default: the shipped demo sample)")
    parser.add_argument("--target-present", type=float, default=48.0,
                        help="median present features per document (default: %(default)g)")
    parser.add_argument("--fit-on", choices=["all", "prompt", "response"], default="all",
                        help="documents the median is taken over (default: %(default)s: prompts "
                        "and responses together)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many events")
    parser.add_argument("--out", type=Path, default=None,
                        help="file to write (default: presence_thresholds.json beside the SAE)")


def configure_encode_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, default=None, help="JSONL file of LLM events")
    parser.add_argument(
        "--alpaca", metavar="MODEL", default=None, help="encode an AlpacaEval model's outputs"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many events")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSONL file for the codes (default: none)"
    )


def configure_train_sae(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="directory for the SAE")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("var/sae-work"), help="activation cache"
    )
    parser.add_argument("--hook", default="blocks.12.hook_resid_post", help="where to read")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="training tokens")
    parser.add_argument("--held-out-tokens", type=int, default=60_000)
    parser.add_argument(
        "--max-tokens-per-text",
        type=int,
        default=None,
        help="tokens read per text (default: encode.max_tokens_per_text); longer texts give "
        "more training tokens from the same corpus",
    )
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32, help="active features per token (TopK)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="model precision while extracting activations (default: %(default)s: bf16 "
        "where this CPU measured it faster, else fp32; bf16 weights on CUDA)",
    )


def configure_label_features(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, required=True, help="labels file to write")
    parser.add_argument(
        "--activations", type=Path, default=None, help=".npz activation cache of train-sae"
    )
    parser.add_argument(
        "--tokens", type=int, default=300_000, help="corpus tokens when no cache is given"
    )


COMMANDS = [
    ("encode-file", cmd_encode_file, "encode events (JSONL or AlpacaEval) into SAE codes"),
    ("train-sae", cmd_train_sae, "train a TopK SAE on the corpus (the default SAE's recipe)"),
    ("label-features", cmd_label_features, "label SAE features from top activations"),
    ("calibrate-thresholds", cmd_calibrate_thresholds,
     "calibrate per-feature presence thresholds on a reference corpus"),
]
CONFIGURERS = {
    "encode-file": configure_encode_file,
    "train-sae": configure_train_sae,
    "label-features": configure_label_features,
    "calibrate-thresholds": configure_calibrate_thresholds,
}
