"""Encoder throughput: the full SAE encoder vs the bare model forward on the same batches.

Measured side by side in one process, on the same tokenized texts and the same batch plan:

* ``encoder``: :meth:`SAEEncoder.encode_texts` end to end (tokenize, bucket, pad, forward to
  the hook, SAE encode, max-pool, sparse output);
* ``bare_to_hook``: only the model forward of the early-exit model on pre-built padded batches;
* ``full_forward``: the same batches through all layers (no early exit; never the LM head);
* ``sae_pool``: SAE encode + max-pool on cached hook activations (its share of ``encoder``);
* a batch-size sweep of ``encoder`` over ``max_tokens_per_batch``;
* fp32 vs bf16 (autocast on CPU) vs int8 dynamic quantization of the linear layers: speed,
  interleaved, and agreement of the codes with fp32 (Jaccard of fired sets), beside what
  ``encode.precision: auto`` chose on this CPU and why.

``--overhead`` runs :mod:`benchmarks.perf.encoder_overhead` instead: the encoder with its
forward replaced by stored activations, by stage, beside the real forward (issue 17).

Each timing is the median of ``--runs`` runs after one warm-up; encoder, bare forward, SAE and
full forward run interleaved (order rotated per run), so their ratios are side by side. Run on the default offline
model here, or on a user's model and SAE on GPU::

    python -m benchmarks.perf.encoder                      # default model + shipped SAE, CPU
    python -m benchmarks.perf.encoder --model google/gemma-2-2b \\
        --sae-release gemma-scope-2b-pt-res-canonical --sae-id layer_12/width_16k/canonical \\
        --device cuda --events 512 --batch-tokens 8192 16384 32768
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from saewatch.config import EncodeSettings, SaeRef
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.model import base_model_of, hook_module, load_language_model, run_to_hook
from saewatch.encode.precision import NATIVE_BF16_FLAGS, cpu_flags, cpu_name
from saewatch.encode.reader import ActivationReader, plan_batches
from saewatch.encode.text import TokenizedText
from saewatch.models import SparseCodes
from saewatch.training.corpus import held_out_texts

logger = logging.getLogger("benchmarks.perf.encoder")


def _timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_medians(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each callable, runs interleaved and the order rotated every run.

    A change of machine load during the measurement then hits every side alike, so the ratios
    between them hold even when the absolute times do not.
    """
    for fn in fns.values():
        fn()  # warm-up
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(_timed(fns[name]))
    return {name: statistics.median(t) for name, t in times.items()}


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls after one warm-up call."""
    return interleaved_medians({"fn": fn}, runs)["fn"]


def padded_batches(
    docs: list[TokenizedText], budget: int, pad_id: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The encoder's batch plan as ready-made padded tensors (for the bare forwards)."""
    out = []
    for group in plan_batches([len(d.ids) for d in docs], budget):
        width = max(len(docs[i].ids) for i in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(group):
            ids[row, : len(docs[i].ids)] = torch.tensor(docs[i].ids)
            mask[row, : len(docs[i].ids)] = 1
        out.append((ids.to(device), mask.to(device)))
    return out


def settings_from(args: argparse.Namespace, **overrides: object) -> EncodeSettings:
    sae = None
    if args.sae is not None:
        sae = SaeRef(path=args.sae)
    elif args.sae_release is not None:
        sae = SaeRef(release=args.sae_release, sae_id=args.sae_id)
    values: dict[str, object] = {
        "model": args.model,
        "gguf_file": args.gguf_file,
        "sae": sae,
        "device": args.device,
        "max_tokens_per_text": args.max_tokens_per_text,
        "max_tokens_per_batch": args.batch_tokens[0],
        "sanity_tokens": 0,
    }
    values.update(overrides)
    return EncodeSettings(**values)  # type: ignore[arg-type]


def jaccard(a: SparseCodes, b: SparseCodes) -> float:
    """Mean Jaccard similarity of the fired-feature sets of two encodings of the same texts."""
    scores = []
    for i in range(len(a)):
        x, y = set(a.row(i)[0].tolist()), set(b.row(i)[0].tolist())
        scores.append(len(x & y) / max(len(x | y), 1))
    return float(np.mean(scores))


def run(args: argparse.Namespace) -> dict[str, object]:
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = held_out_texts(per_model=max(4, args.events // 8))[: args.events]
    encoder = SAEEncoder.from_settings(settings_from(args))
    reader = encoder.reader
    docs = reader.tokenize(texts, "response")
    tokens = sum(d.n_tokens for d in docs)
    padded_tokens = sum(len(d.ids) for d in docs)
    budget = args.batch_tokens[0]
    batches = padded_batches(docs, budget, reader._pad_id, reader.device)
    module = hook_module(reader._base, reader.hook)

    def bare() -> None:
        with torch.inference_mode(), reader_autocast(reader):
            for ids, mask in batches:
                run_to_hook(reader._base, module, ids, mask)

    acts = list(reader.iter_batches(docs))
    results = interleaved_medians({
        "encoder": lambda: encoder.encode_texts(texts, "response"),
        "bare_to_hook": bare,
        "sae_pool": lambda: [encoder._pool(b) for b in acts],
        "full_forward": full_forward(args, reader, batches),
    }, args.runs)
    sweep = {}
    for budget_i in args.batch_tokens:
        enc_i = SAEEncoder(reader, encoder.sae, encoder.encoder_id, sanity_tokens=0)
        reader.max_tokens_per_batch = reader._token_budget = budget_i
        sweep[budget_i] = median_time(lambda e=enc_i: e.encode_texts(texts, "response"), args.runs)
    reader._token_budget = budget
    precision = compare_precision(args, texts, encoder) if reader.device.type == "cpu" else {}
    return report(args, encoder, texts, tokens, padded_tokens, results, sweep, precision)


def full_forward(
    args: argparse.Namespace,
    reader: ActivationReader,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> Callable[[], None]:
    """The same batches through every layer (no early exit; still no LM head)."""
    full_model, _ = load_language_model(args.model, args.gguf_file)
    dtype = next(reader._base.parameters()).dtype
    full_base = base_model_of(full_model).to(reader.device, dtype=dtype)
    full_module = hook_module(full_base, reader.hook)

    def full() -> None:
        with torch.inference_mode(), reader_autocast(reader):
            for ids, mask in batches:
                run_to_hook(full_base, full_module, ids, mask)  # all layers run

    return full


def reader_autocast(reader: ActivationReader) -> torch.autocast:
    """The same autocast the reader uses (bf16 on CPU only when asked for)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=reader._autocast)


def compare_precision(
    args: argparse.Namespace, texts: list[str], chosen: SAEEncoder
) -> dict[str, object]:
    """fp32 vs bf16 autocast on CPU, interleaved: speed, agreement of the codes, and what
    ``encode.precision: auto`` chose on this CPU (with its probe's figures)."""
    other = "fp32" if chosen.reader.precision == "bf16" else "bf16"
    encoders = {chosen.reader.precision: chosen,
                other: SAEEncoder.from_settings(settings_from(args, precision=other)),
                "int8": int8_encoder(args)}
    fp32, bf16 = encoders["fp32"], encoders["bf16"]
    a = fp32.encode_texts(texts, "response")
    b = bf16.encode_texts(texts, "response")
    c = encoders["int8"].encode_texts(texts, "response")
    dense_a = fp32.dense_embed(texts[:16])
    dense_b = bf16.dense_embed(texts[:16])
    cos = (dense_a * dense_b).sum(1) / (
        np.linalg.norm(dense_a, axis=1) * np.linalg.norm(dense_b, axis=1)
    )
    seconds = interleaved_medians(
        {p: (lambda e=e: e.encode_texts(texts, "response")) for p, e in encoders.items()},
        args.runs)
    choice = chosen.reader.precision_choice
    flags = cpu_flags()
    return {
        "cpu": cpu_name(),
        "cpu_bf16_flags": sorted(flags & NATIVE_BF16_FLAGS),
        "cpu_avx512": any(f.startswith("avx512") for f in flags),
        "auto_precision": choice.precision,
        "auto_reason": choice.reason,
        **{f"{p}_encoder_s": round(s, 3) for p, s in seconds.items()},
        **{f"{p}_events_per_s": round(len(texts) / s, 2) for p, s in seconds.items()},
        "bf16_speedup": round(seconds["fp32"] / seconds["bf16"], 2),
        "int8_speedup": round(seconds["fp32"] / seconds["int8"], 2),
        "codes_jaccard_fp32_vs_bf16": round(jaccard(a, b), 4),
        "codes_jaccard_fp32_vs_int8": round(jaccard(a, c), 4),
        "mean_pooled_cosine_min": float(cos.min()),
    }


def int8_encoder(args: argparse.Namespace) -> SAEEncoder:
    """The fp32 encoder with its linear layers dynamically quantized to int8 (weights int8,
    activations quantized per batch): the candidate the precision study rejected."""
    encoder = SAEEncoder.from_settings(settings_from(args, precision="fp32"))
    with warnings.catch_warnings():  # torch.ao.quantization announces its own deprecation
        warnings.simplefilter("ignore")
        # In place: the layer modules (and the reader's hook on one of them) stay the same
        # objects; only their nn.Linear children are swapped.
        torch.ao.quantization.quantize_dynamic(
            encoder.reader._base, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return encoder


def report(
    args: argparse.Namespace,
    encoder: SAEEncoder,
    texts: list[str],
    tokens: int,
    padded: int,
    results: dict[str, float],
    sweep: dict[int, float],
    precision: dict[str, object],
) -> dict[str, object]:
    n = len(texts)

    def rate(seconds: float) -> dict[str, float]:
        return {
            "s": round(seconds, 3),
            "events_per_s": round(n / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
        }

    out: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, "
        f"{torch.cuda.get_device_name() if encoder.reader.device.type == 'cuda' else 'CPU'}",
        "torch": torch.__version__,
        "encoder_id": encoder.encoder_id,
        "layers_run": f"{encoder.reader.n_layers_kept} of {encoder.reader.n_layers_total}",
        "precision": encoder.reader.precision,
        "texts": n,
        "text_tokens": tokens,
        "tokens_with_template": padded,
        "mean_tokens_per_text": round(tokens / n, 1),
        "max_tokens_per_text": args.max_tokens_per_text,
        "max_tokens_per_batch": args.batch_tokens[0],
        "runs": args.runs,
        **{k: rate(v) for k, v in results.items()},
        "encoder_vs_bare_ratio": round(results["bare_to_hook"] / results["encoder"], 3),
        "early_exit_speedup": round(results["full_forward"] / results["bare_to_hook"], 2),
        "sae_share_of_encoder": round(results["sae_pool"] / results["encoder"], 3),
        "batch_sweep": {str(k): rate(v) for k, v in sweep.items()},
        **precision,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--overhead" in argv:  # the overhead mode has its own module (and options)
        from benchmarks.perf import encoder_overhead

        return encoder_overhead.main([a for a in argv if a != "--overhead"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="transformers model (default: offline)")
    parser.add_argument("--gguf-file", default=None)
    parser.add_argument("--sae", type=Path, default=None, help="local sae-lens SAE directory")
    parser.add_argument("--sae-release", default=None)
    parser.add_argument("--sae-id", default=None)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--events", type=int, default=48, help="held-out responses to encode")
    parser.add_argument("--max-tokens-per-text", type=int, default=256)
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[4096, 2048, 8192])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.output is not None:
        args.output.write_text(text + "\n")
    logger.info("results:\n%s", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
