"""Shared pieces of the Kafka benchmarks (``e2e``, ``scaleout``): a broker, real events, the
encoder under test, text lengths, and the machine facts every figure is reported with.

The broker is the one named by ``SAEWATCH_KAFKA_BOOTSTRAP`` when it answers, otherwise a fresh
:class:`~tests.support.kafka.LocalBroker` from ``deploy/kafka`` (stopped and purged after).
Events are real AlpacaEval answers: ``gpt4_1106_preview`` as ``v1`` on even prompts and its verbose
variant as ``v2`` on odd prompts (the demo's pair), so codes have their real density.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from saewatch.config import EncodeSettings, SaeRef
from saewatch.datasets import alpaca_events
from saewatch.encode.encoder import SAEEncoder
from saewatch.models import LLMEvent, TextField
from tests.support.kafka import LocalBroker, broker_answers

logger = logging.getLogger(__name__)

BASELINE = "gpt4_1106_preview"
CANDIDATE = "gpt4_1106_preview_verbose"
MAX_EVENTS = 804  # each version answers a disjoint half of the 805 prompts
TINY_HOOK = "blocks.1.hook_resid_post"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so ``finally`` blocks stop the brokers we started."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@contextmanager
def kafka_broker() -> Iterator[str]:
    """``host:port`` of a broker: ``$SAEWATCH_KAFKA_BOOTSTRAP`` if it answers, else a fresh one."""
    given = os.environ.get("SAEWATCH_KAFKA_BOOTSTRAP")
    if given and broker_answers(given):
        logger.info("using the broker at %s", given)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="saewatch-bench-kafka-") as run_dir:
        broker = LocalBroker(Path(run_dir))
        logger.info("starting a broker on %s (deploy/kafka)", broker.bootstrap)
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop(purge=True)


def pair_events(n: int) -> list[LLMEvent]:
    """``n`` real events, half ``v1`` (baseline) and half ``v2`` (verbose variant), interleaved."""
    if not 2 <= n <= MAX_EVENTS:
        raise ValueError(f"events must be in [2, {MAX_EVENTS}], got {n}")
    half = n // 2
    v1 = alpaca_events(BASELINE, version="v1", model_id="bot", indices=range(0, 2 * half, 2))
    v2 = alpaca_events(CANDIDATE, version="v2", model_id="bot",
                     indices=range(1, 2 * (n - half), 2), start=v1[-1].timestamp)
    # Interleaved, as two live versions would arrive; the order does not change the counts.
    mixed = [e for pair in zip(v1, v2, strict=False) for e in pair]
    return mixed + v2[len(v1):]


def encode_settings(
    model: str | None,
    sae: Path | None,
    max_tokens_per_text: int,
    max_tokens_per_batch: int,
    precision: str = "auto",
) -> EncodeSettings:
    """The encoder configuration under test (``model``/``sae`` None: the offline default)."""
    return EncodeSettings(
        model=model,
        sae=SaeRef(path=sae) if sae is not None else None,
        device="cpu",
        max_tokens_per_text=max_tokens_per_text,
        max_tokens_per_batch=max_tokens_per_batch,
        precision=precision,  # type: ignore[arg-type]
    )


def build_tiny_model(root: Path) -> tuple[Path, Path]:
    """A 4-layer random Llama (default tokenizer) and a random TopK SAE, saved under ``root``.

    For ``--quick`` smoke runs only: it exercises every moving part in seconds, but its speed
    says nothing about a real model.
    """
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformers import LlamaConfig, LlamaForCausalLM

    from saewatch.encode.model import load_default_tokenizer

    tokenizer = load_default_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True)
    LlamaForCausalLM(config).eval().save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    sae_cfg = TopKSAEConfig(d_in=64, d_sae=256, k=8,
                            metadata=SAEMetadata(hook_name=TINY_HOOK, model_name="tiny"))
    TopKSAE(sae_cfg).eval().save_model(str(root / "sae"))
    return root / "model", root / "sae"


@dataclass(frozen=True)
class TextLengths:
    """Mean tokens per event field that the encoder actually runs (after truncation)."""

    prompt: float
    response: float

    @property
    def per_event(self) -> float:
        return self.prompt + self.response


def text_lengths(encoder: SAEEncoder, events: Sequence[LLMEvent]) -> TextLengths:
    """Mean pooled tokens per prompt and per response (after ``max_tokens_per_text``)."""

    def mean(field: TextField) -> float:
        docs = encoder.reader.tokenize([e.text(field) for e in events], field)
        return sum(d.n_tokens for d in docs) / max(len(docs), 1)

    return TextLengths(prompt=round(mean("prompt"), 1), response=round(mean("response"), 1))


def flops_per_token(encoder: SAEEncoder) -> dict[str, int]:
    """Dense matmul FLOPs per token: 2 x (weights of the layers run) + 2 x d_model x d_sae (SAE
    encoder). Embedding lookups cost no FLOPs; attention scores (~4 x layers x seq x d_model)
    are left out: a few % at these lengths. The basis of the capacity model."""
    base = encoder.reader._base  # the early-exit model the reader runs (layers past the hook cut)
    embed = base.get_input_embeddings()
    embed_params = sum(p.numel() for p in embed.parameters()) if embed is not None else 0
    layer_params = sum(p.numel() for p in base.parameters()) - embed_params
    sae = 2 * encoder.reader.d_model * encoder.d_sae
    return {"model_params_run": layer_params, "model_flops": 2 * layer_params, "sae_flops": sae,
            "total": 2 * layer_params + sae}


def describe_encoder(encoder: SAEEncoder, settings: EncodeSettings) -> dict[str, object]:
    """Model, hook, SAE width and batch budget, as every figure must state them."""
    reader = encoder.reader
    return {
        "encoder_id": encoder.encoder_id,
        "layers_run": f"{reader.n_layers_kept} of {reader.n_layers_total}",
        "d_model": reader.d_model,
        "d_sae": encoder.d_sae,
        "flops_per_token": flops_per_token(encoder),
        "precision": settings.precision,
        "max_tokens_per_text": settings.max_tokens_per_text,
        "max_tokens_per_batch": settings.max_tokens_per_batch,
    }


def machine() -> dict[str, object]:
    """CPU, cores, torch threads and the 1/5/15-minute load average right now."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rate(events: int, seconds: float) -> float:
    """Events per second, rounded for reports."""
    return round(events / seconds, 2) if seconds > 0 else float("nan")


def run_measurement(
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace, EncodeSettings, Path], dict[str, object]],
    prefix: str,
) -> int:
    """The shared ``main`` of the Kafka benchmarks: set up, measure, print and save the JSON.

    ``--quick`` without ``--model``/``--sae`` builds the tiny random model in the scratch folder.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        model, sae = args.model, args.sae
        precision = "auto"  # the daemon's own choice for real models
        if args.quick and model is None and sae is None:
            model_dir, sae = build_tiny_model(root / "tiny")
            model = str(model_dir)
            precision = "fp32"  # the smoke runs compare counts exactly, as the suite does
        encode = encode_settings(model, sae, args.max_tokens_per_text, args.max_tokens_per_batch,
                                 precision)
        result = measure(args, encode, root)
    result["quick"] = args.quick
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0
