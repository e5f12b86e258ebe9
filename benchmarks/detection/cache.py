"""Every distinct text encoded once: SAE codes and the dense baseline's vector, cached on disk.

Encoding is the slow part (~10-20 texts/s on 2 CPU cores); each stream of the benchmark reuses
the same texts many times (A/A splits, looks, seeds). One model pass per text yields both the
sparse document code (exactly :meth:`SAEEncoder.encode_texts`' max-pool) and the mean-pooled hook
activations (exactly :meth:`SAEEncoder.dense_embed`), written in append-only shards under
``<cache>/detection/<encoder key>/`` (``<cache>``: ``$SAEWATCH_CACHE_DIR`` or
``~/.cache/saewatch``), addressed by the SHA-256 of the text. The encoder key hashes the encoder id,
the SAE's weights and every setting that changes codes, so another SAE or budget starts afresh.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.reader import TokenBatch
from saewatch.models import SparseCodes, TextField

logger = logging.getLogger(__name__)

CHUNK = 256  # texts per shard: progress survives an interrupted run
_Row = tuple[np.ndarray, np.ndarray, int, bool]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def encoder_key(encoder: SAEEncoder) -> str:
    """Folder name: model and hook, plus a digest of SAE weights and code-changing settings.

    The SAE's weights, not its directory, identify it: a copy of the same SAE reuses the cache.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.sae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    reader = encoder.reader
    model = encoder.encoder_id.split("/")[0]
    digest.update(f"{model}|{reader.text.max_tokens_per_text}|"
                  f"{reader.text.tail_tokens_per_text}|{encoder.threshold}|"
                  f"{reader.precision}|{reader.hook.hook_name}|{reader.text.use_chat_template}"
                  .encode())
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}-{reader.hook.hook_name}")[:60]
    return f"{readable}-{digest.hexdigest()[:16]}"


class CodeStore:
    """Codes and dense vectors of texts, encoding (and caching) the missing ones on demand.

    Parameters
    ----------
    encoder
        The encoder; its id and d_sae go into every batch built from the store.
    folder
        Where the shards live (one folder per :func:`encoder_key`).
    field
        Which turn the texts are read as (the benchmark diffs responses).
    """

    def __init__(self, encoder: SAEEncoder, folder: Path, field: TextField = "response") -> None:
        self.encoder = encoder
        self.folder = folder
        self.field: TextField = field
        self._rows: dict[str, _Row] = {}
        self._dense: dict[str, np.ndarray] = {}
        self.encoded_now = 0
        self.encode_seconds = 0.0
        for shard in sorted(folder.glob("shard-*.npz")):
            self._load(shard)

    @property
    def encoder_id(self) -> str:
        return self.encoder.encoder_id

    @property
    def precision(self) -> str:
        """The precision the encoder runs in (``auto`` resolved for this CPU)."""
        return self.encoder.reader.precision

    @property
    def d_sae(self) -> int:
        return self.encoder.d_sae

    def __len__(self) -> int:
        return len(self._rows)

    def has(self, text: str) -> bool:
        """Whether ``text`` is cached."""
        return text_key(text) in self._rows

    def ensure(self, texts: Sequence[str]) -> None:
        """Encode the texts not cached yet (each distinct text once), shard by shard."""
        missing = list(dict.fromkeys(t for t in texts if text_key(t) not in self._rows))
        if not missing:
            return
        logger.info("encoding %d new texts (%d cached)", len(missing), len(self._rows))
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            began = time.monotonic()
            codes, dense = self._encode(chunk)
            self.encode_seconds += time.monotonic() - began
            self.encoded_now += len(chunk)
            self._write(chunk, codes, dense)
            logger.info("encoded %d/%d (%.1f texts/s)", min(start + CHUNK, len(missing)),
                        len(missing), self.encoded_now / max(self.encode_seconds, 1e-9))

    def codes(self, texts: Sequence[str], presence: bool = True) -> SparseCodes:
        """The codes of ``texts``, in order (call :meth:`ensure` first), as the encoder emits
        them: its presence thresholds applied, unless ``presence`` is False.

        The cache holds the pooled codes *before* presence thresholds (every feature above
        ``encoder.threshold``), so one cache serves any thresholds of the same SAE.
        """
        rows = [self._rows[text_key(t)] for t in texts]
        codes = SparseCodes.from_arrays([r[0] for r in rows], [r[1] for r in rows],
                                        [r[2] for r in rows], [r[3] for r in rows])
        thresholds = self.encoder.presence
        return thresholds.apply(codes) if presence and thresholds is not None else codes

    def truncated_share(self, texts: Sequence[str]) -> float:
        """Share of (distinct) ``texts`` cut at the token budget."""
        keys = {text_key(t) for t in texts}
        return sum(self._rows[k][3] for k in keys) / max(1, len(keys))

    def dense(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled hook activations ``[len(texts), d_model]`` (float32)."""
        return np.stack([self._dense[text_key(t)] for t in texts])

    # --- encoding and shards ------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> tuple[SparseCodes, np.ndarray]:
        """One model pass per batch: the encoder's own max-pool for codes, a mean for dense."""
        reader = self.encoder.reader
        docs = reader.tokenize(texts, self.field)
        rows: list[tuple[np.ndarray, np.ndarray]] = [
            (np.zeros(0, np.int32), np.zeros(0, np.float16))] * len(docs)
        dense = np.zeros((len(docs), reader.d_model), dtype=np.float32)

        def both(batch: TokenBatch) -> tuple[list[int], list[tuple[np.ndarray, np.ndarray]]]:
            with torch.inference_mode():
                sums = torch.zeros(len(batch.docs), reader.d_model, device=batch.acts.device)
                sums.index_add_(0, batch.doc_index, batch.acts)
                counts = torch.bincount(batch.doc_index, minlength=len(batch.docs))
                dense[batch.docs] = (sums / counts.clamp(min=1).unsqueeze(1)).cpu().numpy()
            # The encoder's own pooling, so cached codes are what encode() gives (checked by the
            # App/Kafka equivalence run) before presence thresholds, which codes() applies.
            return self.encoder._pool(batch, presence=False)  # noqa: SLF001

        for doc_ids, pooled in reader.map_batches(docs, both):
            for doc, row in zip(doc_ids, pooled, strict=True):
                rows[doc] = row
        lengths = [len(r[0]) for r in rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        codes = SparseCodes(
            indptr=indptr,
            indices=np.concatenate([r[0] for r in rows]).astype(np.int32),
            values=np.concatenate([r[1] for r in rows]).astype(np.float16),
            n_tokens=np.asarray([d.n_tokens for d in docs], dtype=np.int32),
            truncated=np.asarray([d.truncated for d in docs], dtype=bool),
        )
        return codes, dense

    def _write(self, texts: list[str], codes: SparseCodes, dense: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = np.array([text_key(t) for t in texts])
        name = f"shard-{time.time_ns()}-{keys[0][:8]}"
        tmp = self.folder / f"{name}.tmp.npz"
        np.savez(tmp, keys=keys, indptr=codes.indptr, indices=codes.indices, values=codes.values,
                 n_tokens=codes.n_tokens, truncated=codes.truncated, dense=dense)
        tmp.replace(self.folder / f"{name}.npz")
        self._add(keys, codes, dense)

    def _load(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            codes = SparseCodes(indptr=data["indptr"], indices=data["indices"],
                                values=data["values"], n_tokens=data["n_tokens"],
                                truncated=data["truncated"])
            self._add(data["keys"], codes, data["dense"])

    def _add(self, keys: np.ndarray, codes: SparseCodes, dense: np.ndarray) -> None:
        for i, key in enumerate(keys):
            idx, val = codes.row(i)
            self._rows[str(key)] = (idx.copy(), val.copy(), int(codes.n_tokens[i]),
                                    bool(codes.truncated[i]))
            self._dense[str(key)] = dense[i].copy()
