"""The encoder's work around the model: real forward vs a replayed one, by stage, in one run.

The encoder runs the same polls of real events (prompt and response) four ways, interleaved
(order rotated every run) so a change of load on a shared machine hits all alike:

* ``encoder``: :meth:`SAEEncoder.encode` on each poll, the real model forward;
* ``bare_forward``: only the model forward to the hook, on the encoder's own padded batches of
  those polls, prepared beforehand (the floor ``encoder`` is compared with);
* ``replay``: :meth:`SAEEncoder.encode` with the forward replaced by the activations it
  returned on the same batches (stored tensors of the right shape), so what is left is
  tokenizing, batching, padding, masking, the SAE, pooling and assembling the codes: the
  CPU-side overhead, which a GPU does not make faster;
* ``stream``: :meth:`SAEEncoder.encode_stream` over the polls (the next poll is tokenized in a
  thread during the current one's forward), real forward.

Then one more real and one more replayed pass run with a stage clock
(:class:`saewatch.encode.stages.StageTimes`), for µs per event and per text token by stage. On
CUDA the clock synchronizes at each stage boundary, so the by-stage figures are exact but
their sum is above the unobserved times. Every replayed pass is checked to give the codes of
the real one. Run::

    python -m benchmarks.perf.encoder_overhead                      # default model, CPU, fp32
    python -m benchmarks.perf.encoder_overhead --device cuda --precision auto --events 512 \\
        --poll 128 --batch-tokens 8192 --output gpu_overhead.json   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from benchmarks.perf.encoder import interleaved_medians, reader_autocast
from saewatch.config import EncodeSettings, SaeRef
from saewatch.datasets import read_alpaca
from saewatch.encode.batching import pad_batch, to_device
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.precision import NATIVE_BF16_FLAGS, cpu_flags, cpu_name
from saewatch.encode.reader import ActivationReader, plan_batches
from saewatch.encode.stages import NULL_CLOCK, StageTimes
from saewatch.models import FeatureBatch, LLMEvent
from saewatch.training.corpus import TRAIN_EXCLUDED_MODELS, is_held_out_instruction

logger = logging.getLogger("benchmarks.perf.encoder_overhead")

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def held_out_events(n: int) -> list[LLMEvent]:
    """``n`` real events: held-out instructions and the answers of models kept out of training."""
    events: list[LLMEvent] = []
    start = datetime(2026, 11, 20, tzinfo=UTC)
    per_model = max(4, n // 8)
    for model in sorted(TRAIN_EXCLUDED_MODELS - {"NullModel"}):
        rows = [r for r in read_alpaca(model) if is_held_out_instruction(r.index)][:per_model]
        events += [LLMEvent(event_id=f"{model}-{r.index}", timestamp=start + timedelta(seconds=i),
                            model_id="bench", model_version=model, prompt=r.instruction,
                            response=r.output) for i, r in enumerate(rows) if r.output.strip()]
    return events[:n]


class ReplayForward:
    """Records the forward's outputs once, then returns them again in the same call order.

    The encoder's batch plan is deterministic, so replaying by order gives every batch its own
    activations (the shape is checked; no device sync is needed to find them).
    """

    def __init__(self, reader: ActivationReader) -> None:
        self.reader = reader
        self.stored: list[torch.Tensor] = []
        self._at = 0

    def record(self, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        acts = self.reader.run_model(input_ids, attention)
        self.stored.append(acts.clone())
        return acts

    def replay(self, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        acts = self.stored[self._at % len(self.stored)]
        self._at += 1
        if acts.shape[:2] != input_ids.shape:
            raise RuntimeError("replayed batch out of step with the batch plan")
        return acts


def bare_batches(encoder: SAEEncoder, polls: Sequence[Sequence[LLMEvent]]) -> Batches:
    """The encoder's padded model batches of every poll and field, already on the device."""
    reader = encoder.reader
    out: Batches = []
    for poll in polls:
        for docs in reader.tokenize_fields([([e.text(f) for e in poll], f)
                                            for f in ("prompt", "response")]):
            wanted = [i for i, d in enumerate(docs) if d.n_tokens > 0]
            for plan in plan_batches([len(docs[i].ids) for i in wanted], reader._token_budget):
                host = pad_batch(docs, [wanted[j] for j in plan], reader._pad_id)
                out.append((to_device(host.input_ids, reader.device),
                            to_device(host.attention, reader.device)))
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    if args.threads:
        torch.set_num_threads(args.threads)
    events = held_out_events(args.events)
    polls = [events[i : i + args.poll] for i in range(0, len(events), args.poll)]
    encoder = SAEEncoder.from_settings(settings_from(args))
    reader = encoder.reader
    replay = ReplayForward(reader)
    reader.forward_fn = replay.record
    reference = [encoder.encode(p) for p in polls]
    reader.forward_fn = reader.run_model
    batches = bare_batches(encoder, polls)
    if len(batches) != len(replay.stored):
        raise RuntimeError("the bare batches are not the encoder's")

    def bare() -> None:
        with torch.inference_mode(), reader_autocast(reader):
            for ids, mask in batches:
                reader.run_model(ids, mask)

    def replayed() -> list[FeatureBatch]:
        reader.forward_fn = replay.replay
        try:
            return [encoder.encode(p) for p in polls]
        finally:
            reader.forward_fn = reader.run_model

    check_same(reference, replayed())
    seconds = interleaved_medians({
        "encoder": lambda: [encoder.encode(p) for p in polls],
        "bare_forward": bare,
        "replay": replayed,
        "stream": lambda: list(encoder.encode_stream(polls)),
    }, args.runs)
    logger.info("medians (s): %s", seconds)
    stages = {"real": by_stage(encoder, lambda: [encoder.encode(p) for p in polls]),
              "replay": by_stage(encoder, replayed)}
    return report(args, encoder, events, reference, seconds, stages)


def by_stage(encoder: SAEEncoder, fn: object) -> dict[str, float]:
    """Seconds per stage of one pass of ``fn`` under a stage clock."""
    clock = StageTimes(sync_device=encoder.reader.device)
    encoder.reader.clock = clock
    try:
        fn()  # type: ignore[operator]
    finally:
        encoder.reader.clock = NULL_CLOCK
    return clock.seconds


def check_same(a: list[FeatureBatch], b: list[FeatureBatch]) -> None:
    for x, y in zip(a, b, strict=True):
        for field in ("prompt", "response"):
            cx, cy = x.codes(field), y.codes(field)
            if not (np.array_equal(cx.indptr, cy.indptr) and np.array_equal(cx.indices, cy.indices)
                    and cx.values.tobytes() == cy.values.tobytes()):
                raise RuntimeError(f"replayed {field} codes differ from the real forward's")


def settings_from(args: argparse.Namespace) -> EncodeSettings:
    sae = SaeRef(path=args.sae) if args.sae is not None else (
        SaeRef(release=args.sae_release, sae_id=args.sae_id) if args.sae_release else None)
    return EncodeSettings(model=args.model, gguf_file=args.gguf_file, sae=sae, device=args.device,
                          precision=args.precision, max_tokens_per_text=args.max_tokens_per_text,
                          max_tokens_per_batch=args.batch_tokens, sanity_tokens=0)


def report(
    args: argparse.Namespace,
    encoder: SAEEncoder,
    events: list[LLMEvent],
    codes: list[FeatureBatch],
    seconds: dict[str, float],
    stages: dict[str, dict[str, float]],
) -> dict[str, object]:
    n = len(events)
    tokens = int(sum(b.prompt.n_tokens.sum() + b.response.n_tokens.sum() for b in codes))

    def per(s: float) -> dict[str, float]:
        return {"s": round(s, 4), "us_per_event": round(s / n * 1e6, 1),
                "us_per_token": round(s / tokens * 1e6, 3),
                "events_per_s": round(n / s, 2) if s > 0 else None}

    overhead = seconds["encoder"] - seconds["bare_forward"]
    device = encoder.reader.device
    flags = cpu_flags()
    return {
        "machine": {"cpu": cpu_name(), "cpu_bf16_flags": sorted(flags & NATIVE_BF16_FLAGS),
                    "cpu_avx512": any(f.startswith("avx512") for f in flags),
                    "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "encoder_id": encoder.encoder_id,
        "precision": encoder.reader.precision,
        "events": n, "polls": len(codes), "poll_size": args.poll,
        "text_tokens": tokens, "mean_tokens_per_event": round(tokens / n, 1),
        "max_tokens_per_text": args.max_tokens_per_text, "max_tokens_per_batch": args.batch_tokens,
        "runs": args.runs,
        **{name: per(s) for name, s in seconds.items()},
        "encoder_vs_bare_ratio": round(seconds["bare_forward"] / seconds["encoder"], 3),
        "stream_vs_bare_ratio": round(seconds["bare_forward"] / seconds["stream"], 3),
        # Negative when load noise made the bare forward the slower side in this run.
        "overhead_beside_real_forward": per(overhead),
        "cpu_side_overhead_replay": per(seconds["replay"]),
        "stages": {kind: {name: per(s) for name, s in sorted(st.items())}
                   for kind, st in stages.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="transformers model (default: offline)")
    parser.add_argument("--gguf-file", default=None)
    parser.add_argument("--sae", type=Path, default=None, help="local sae-lens SAE directory")
    parser.add_argument("--sae-release", default=None)
    parser.add_argument("--sae-id", default=None)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--events", type=int, default=48, help="held-out events to encode")
    parser.add_argument("--poll", type=int, default=16, help="events per encode call")
    parser.add_argument("--max-tokens-per-text", type=int, default=256)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    text = json.dumps(run(args), indent=2)
    if args.output is not None:
        args.output.write_text(text + "\n")
    logger.info("results:\n%s", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
