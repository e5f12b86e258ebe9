"""``saewatch train-sae``: corpus -> activations (cached) -> TopK SAE -> held-out report.

Activations of the training texts are cached in ``work_dir`` in shards
(:class:`~saewatch.training.activation_cache.ActivationCache`: an interrupted extraction
resumes), the held-out ones as one ``.npz``, so a second run with other hyperparameters (or
``label-features``) skips the slow model forwards. Training checkpoints to ``work_dir`` too and
resumes after an interruption (:func:`~saewatch.training.train.train_topk_sae`).
"""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from saewatch.encode.default import DEFAULT_MODEL_NAME, REPORT_FILE
from saewatch.encode.model import HookPoint, load_language_model
from saewatch.encode.precision import Precision
from saewatch.encode.reader import ActivationReader
from saewatch.models import TextField
from saewatch.training.activation_cache import ActivationCache, texts_key
from saewatch.training.corpus import HELD_OUT_EVERY, held_out_texts, training_texts
from saewatch.training.train import (
    ActivationSet,
    TrainConfig,
    evaluate_sae,
    extract_activations,
    save_sae_fp16,
    train_topk_sae,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSaeOptions:
    """What ``train-sae`` does; defaults reproduce the shipped default SAE."""

    out_dir: Path
    work_dir: Path
    model: str | None = None  # None: the offline default model
    gguf_file: str | None = None
    hook: HookPoint = field(default_factory=lambda: HookPoint(layer=12, kind="resid_post"))
    train_tokens: int = 1_000_000
    held_out_tokens: int = 60_000
    max_tokens_per_text: int = 256
    precision: Precision = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)


def _progress(label: str) -> object:
    last = [0.0]

    def report(done: int, total: int, extra: dict[str, float] | None = None) -> None:
        now = time.monotonic()
        if now - last[0] < 10 and done < total:
            return
        last[0] = now
        more = " ".join(f"{k}={v:.4f}" for k, v in (extra or {}).items())
        logger.info("%s: %d/%d %s", label, min(done, total), total, more)

    return report


def _activations(
    reader: ActivationReader, path: Path, texts: list[tuple[str, TextField]], tokens: int
) -> ActivationSet:
    if path.is_file():
        logger.info("reusing cached activations %s", path)
        return ActivationSet.load(path)
    started = time.monotonic()
    acts = extract_activations(reader, texts, tokens, progress=_progress(path.stem))  # type: ignore[arg-type]
    logger.info("%s: %d tokens in %.0f s", path.stem, len(acts.acts), time.monotonic() - started)
    acts.save(path)
    return acts


def run_train_sae(options: TrainSaeOptions) -> dict[str, object]:
    """Train, evaluate and save an SAE; returns the training report (also written to disk)."""
    options.work_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_language_model(options.model, options.gguf_file)
    reader = ActivationReader(
        model,
        tokenizer,
        options.hook,
        device="auto",
        precision=options.precision,
        max_tokens_per_text=options.max_tokens_per_text,
    )
    prompts, responses = training_texts()
    texts: list[tuple[str, TextField]] = [(p, "prompt") for p in prompts]
    texts += [(r, "response") for r in responses]
    random.Random(0).shuffle(texts)
    tag = f"{options.hook.hook_name}-{options.max_tokens_per_text}"
    model_name = options.model or DEFAULT_MODEL_NAME
    key = texts_key(texts, model_name, options.gguf_file, tag)
    cache = ActivationCache(options.work_dir / f"train-{tag}", key)
    started = time.monotonic()
    train_set = cache.extract(reader, texts, options.train_tokens, progress=_progress("train"))  # type: ignore[arg-type]
    logger.info("train activations: %d tokens in %.0f s", len(train_set.acts),
                time.monotonic() - started)
    held: list[tuple[str, TextField]] = [(t, "response") for t in held_out_texts()]
    held_set = _activations(
        reader, options.work_dir / f"held_out-{tag}.npz", held, options.held_out_tokens
    )
    started = time.monotonic()
    sae = train_topk_sae(
        train_set.acts,
        options.train,
        metadata={
            "model_name": model_name,
            "hook_name": options.hook.hook_name,
            "prepend_bos": False,
            "context_size": options.max_tokens_per_text,
            "dataset_path": "alpaca_eval (saewatch shared data)",
        },
        progress=_progress("train"),  # type: ignore[arg-type]
        checkpoint=options.work_dir / f"checkpoint-{tag}-{_config_tag(options.train)}.pt",
    )
    train_s = time.monotonic() - started
    held_eval = evaluate_sae(sae, held_set.acts)
    train_eval = evaluate_sae(sae, train_set.acts[:60_000])
    save_sae_fp16(sae, options.out_dir)
    report: dict[str, object] = {
        "model": model_name,
        "hook_name": options.hook.hook_name,
        "architecture": "topk",
        "d_in": int(sae.cfg.d_in),
        "d_sae": options.train.d_sae,
        "k": options.train.k,
        "train_tokens": int(len(train_set.acts)),
        "train_documents": len(train_set.texts),
        "held_out_tokens": int(len(held_set.acts)),
        "held_out_documents": len(held_set.texts),
        "held_out_split": (
            f"instructions with index % {HELD_OUT_EVERY} == 0 of models excluded from training"
        ),
        "max_tokens_per_text": options.max_tokens_per_text,
        "activation_precision": options.precision,
        "train_config": asdict(options.train),
        "train_seconds": round(train_s, 1),
        "held_out": _rounded(asdict(held_eval)),
        "train_sample": _rounded(asdict(train_eval)),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (options.out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    logger.info(
        "held-out FVE %.3f, L0 %.1f, dead %.3f",
        held_eval.fve,
        held_eval.mean_l0,
        held_eval.dead_share,
    )
    return report


def _config_tag(config: TrainConfig) -> str:
    return f"d{config.d_sae}-k{config.k}-e{config.epochs:g}-lr{config.lr:g}-s{config.seed}"


def _rounded(values: dict[str, float | int]) -> dict[str, float | int]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}
