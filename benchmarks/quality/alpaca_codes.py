"""Encoded AlpacaEval responses for the real-data diff tests and the worked example, cached.

Encoding costs ~10-20 texts/s on a 2-core CPU, so each model's response codes are encoded once
and cached under ``<cache>/codes/<encoder key>/<model>-<selection hash>.npz`` (``<cache>`` is
``$SAEWATCH_CACHE_DIR`` or ``~/.cache/saewatch``). The encoder key hashes the SAE's config and
weights plus the encode settings that change codes, so a new SAE or setting recomputes and a fresh
machine starts empty. Only the response field is encoded.

Version pairs are built from *disjoint prompt halves*: two versions never see identical traffic,
and identical prompts would make the samples dependent.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from saewatch.config import EncodeSettings
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes

logger = logging.getLogger(__name__)

PAIRS = (
    ("gpt4_1106_preview", "gpt4_1106_preview_verbose"),
    ("claude-2.1", "claude-2.1_concise"),
    ("Mistral-7B-Instruct-v0.2", "Snorkel-Mistral-PairRM-DPO"),
)
MODELS = tuple(sorted({m for pair in PAIRS for m in pair}))
N_INSTRUCTIONS = 200  # per model: two disjoint halves of 100 prompts
# Encoding costs ~1 text/s on a busy 2-core CPU: the first 128 tokens of each response keep a
# cold cache to minutes. Precision is the daemon's own "auto" (bf16 only where it is faster).
ENCODE = EncodeSettings(max_tokens_per_text=128)
N_ALPACA = 805
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def selected_instructions(n: int = N_INSTRUCTIONS, seed: int = 0) -> np.ndarray:
    """A seeded, sorted sample of AlpacaEval instruction indices."""
    return np.sort(np.random.default_rng(seed).choice(N_ALPACA, size=n, replace=False))


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of ``range(n)`` (positions into the selection)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def encoder_key(settings: EncodeSettings) -> str:
    """Names the cache folder: SAE config and weights digest plus code-changing settings."""
    from saewatch.encode.default import default_sae_dir
    from saewatch.encode.presence import PRESENCE_FILE

    sae_dir = Path(settings.sae.path) if settings.sae and settings.sae.path else default_sae_dir()
    digest = hashlib.sha256()
    for name in ("cfg.json", "sae_weights.safetensors"):
        digest.update((sae_dir / name).read_bytes())
    digest.update(f"{settings.model}|{settings.max_tokens_per_text}|{settings.tail_tokens}|"
                  f"{settings.threshold}|{settings.use_chat_template}|"
                  f"{cache_precision(settings)}".encode())
    # Presence thresholds filter the codes: their content is part of what the codes are.
    presence = settings.presence_thresholds
    path = sae_dir / PRESENCE_FILE if presence == "auto" else None if presence == "none" else (
        Path(presence))
    if path is not None and path.is_file():
        digest.update(path.read_bytes())
    return f"sae-{digest.hexdigest()[:16]}"  # content only: a copied SAE keeps its cache


def cache_precision(settings: EncodeSettings) -> str:
    """The precision codes will be encoded in, known before any model loads.

    ``auto`` follows the CPU's flags (:func:`~saewatch.encode.precision.flag_precision`), so
    they separate the caches of the two choices without loading the model.
    """
    from saewatch.encode.precision import flag_precision

    if settings.precision != "auto":
        return settings.precision
    return f"auto-{flag_precision()}"


@dataclass
class CodesCache:
    """Loads cached codes, encoding (and caching) what is missing with one lazily built encoder."""

    settings: EncodeSettings = field(default_factory=lambda: ENCODE)
    root: Path | None = None
    _encoder: object | None = None

    def folder(self) -> Path:
        from saewatch.encode.default import cache_dir

        return (self.root or cache_dir() / "codes") / encoder_key(self.settings)

    def codes(self, model: str, instructions: np.ndarray) -> tuple[SparseCodes, str, int]:
        """Response codes of ``model`` on ``instructions``, with encoder id and d_sae."""
        tag = hashlib.sha256(instructions.astype(np.int64).tobytes()).hexdigest()[:12]
        path = self.folder() / f"{model}-{tag}.npz"
        if not path.is_file():
            self._encode(model, instructions, path)
        with np.load(path, allow_pickle=False) as data:
            codes = SparseCodes(indptr=data["indptr"], indices=data["indices"],
                                values=data["values"], n_tokens=data["n_tokens"],
                                truncated=data["truncated"])
            return codes, str(data["encoder_id"]), int(data["d_sae"])

    def dense(self, model: str, instructions: np.ndarray) -> np.ndarray:
        """Mean-pooled hook activations ``[n, d_model]`` of the same responses (MMD baseline)."""
        tag = hashlib.sha256(instructions.astype(np.int64).tobytes()).hexdigest()[:12]
        path = self.folder() / f"{model}-{tag}-dense.npy"
        if not path.is_file():
            encoder, texts = self._texts(model, instructions)
            logger.info("embedding %d responses of %s (cache miss)", len(texts), model)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, encoder.dense_embed(texts, "response").astype(np.float32))
            tmp.replace(path)
        return np.load(path)

    def _texts(self, model: str, instructions: np.ndarray) -> tuple[Any, list[str]]:
        from saewatch.datasets import read_alpaca
        from saewatch.encode.encoder import SAEEncoder

        if self._encoder is None:
            self._encoder = SAEEncoder.from_settings(self.settings)
        outputs = {r.index: r.output for r in read_alpaca(model)}
        return self._encoder, [outputs[int(i)] for i in instructions]

    def _encode(self, model: str, instructions: np.ndarray, path: Path) -> None:
        encoder, texts = self._texts(model, instructions)
        logger.info("encoding %d responses of %s (cache miss)", len(texts), model)
        codes = encoder.encode_texts(texts, "response")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, indptr=codes.indptr, indices=codes.indices, values=codes.values,
                 n_tokens=codes.n_tokens, truncated=codes.truncated, instructions=instructions,
                 encoder_id=np.array(encoder.encoder_id), d_sae=np.array(encoder.d_sae))
        tmp.replace(path)


def as_batch(codes: SparseCodes, model: str, version: str, instructions: Sequence[int],
             encoder_id: str, d_sae: int, texts: Sequence[str] | None = None,
             model_id: str = "alpaca_eval") -> FeatureBatch:
    """A FeatureBatch of response codes as events of ``model_id``/``version`` (empty prompts)."""
    events = tuple(
        LLMEvent(event_id=f"{model}/{i}", timestamp=T0 + timedelta(seconds=int(i)),
                 model_id=model_id, model_version=version, prompt="",
                 response=texts[k] if texts else "")
        for k, i in enumerate(instructions))
    empty = SparseCodes.from_rows([[] for _ in events], [[] for _ in events])
    return FeatureBatch(encoder_id=encoder_id, d_sae=d_sae, events=events, prompt=empty,
                        response=codes)


def write_bench_npz(path: Path, cache: CodesCache | None = None) -> Path:
    """All models' cached response codes in one npz (``labels`` = model index) for the perf runs."""
    cache = cache or CodesCache()
    parts = [cache.codes(m, selected_instructions()) for m in MODELS]
    indptr = [np.zeros(1, dtype=np.int64)]
    for codes, _, _ in parts:
        indptr.append(indptr[-1][-1] + codes.indptr[1:])
    np.savez(path, indptr=np.concatenate(indptr),
             indices=np.concatenate([c.indices for c, _, _ in parts]),
             values=np.concatenate([c.values for c, _, _ in parts]),
             labels=np.concatenate([np.full(len(c), i) for i, (c, _, _) in enumerate(parts)]),
             d_sae=np.array(parts[0][2]), models=np.array(MODELS))
    return path


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    out = write_bench_npz(Path(sys.argv[1]) if len(sys.argv) > 1 else
                          CodesCache().folder() / "bench.npz")
    logger.info("wrote %s", out)
