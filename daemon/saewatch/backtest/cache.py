"""Sparse codes cached on disk by text, so that replaying a file again with other ``diff.*``
settings does not run the model again.

An entry is keyed by (encoder id, field, SHA-256 of the text and of the encode settings that
change codes without changing the encoder id). Entries are small ``.npz`` files, written to a
temporary name and renamed, so an interrupted run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saewatch.config import EncodeSettings
from saewatch.encode.base import Encoder
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes, TextField

logger = logging.getLogger(__name__)

FIELDS: tuple[TextField, ...] = ("prompt", "response")
# Events per encoder call on a cache miss: the size of one poll of the daemon's default batch.
ENCODE_CHUNK = 64


@dataclass(frozen=True)
class Row:
    """One text's codes: feature ids, their pooled values, tokens read, whether it was cut.

    >>> Row(np.array([4], np.int32), np.array([0.5], np.float16), 3, False).n_tokens
    3
    """

    indices: np.ndarray
    values: np.ndarray
    n_tokens: int
    truncated: bool


class CodeCache:
    """Codes by text under ``root/<encoder id>/``.

    >>> import tempfile, numpy as np
    >>> cache = CodeCache(Path(tempfile.mkdtemp()), "m/blocks.3/sae", EncodeSettings())
    >>> cache.put("response", "hi", Row(np.array([2], np.int32), np.array([1.5], np.float16),
    ...                                 1, False))
    >>> cache.get("response", "hi").indices.tolist(), cache.get("prompt", "hi") is None
    ([2], True)
    """

    def __init__(self, root: Path, encoder_id: str, settings: EncodeSettings) -> None:
        self.root = root
        self.encoder_id = encoder_id
        self.dir = root / _safe(encoder_id)
        # Truncation and the chat template change the codes but not the encoder id.
        self._salt = (f"{settings.max_tokens_per_text}\0{settings.tail_tokens}\0"
                      f"{settings.use_chat_template}\0")

    def _path(self, field: TextField, text: str) -> Path:
        digest = hashlib.sha256(f"{self._salt}{field}\0{text}".encode()).hexdigest()
        return self.dir / field / digest[:2] / f"{digest}.npz"

    def get(self, field: TextField, text: str) -> Row | None:
        path = self._path(field, text)
        try:
            with np.load(path) as data:
                return Row(data["indices"], data["values"], int(data["n_tokens"]),
                           bool(data["truncated"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:  # a damaged entry: encode it again
            logger.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None

    def put(self, field: TextField, text: str, row: Row) -> None:
        path = self._path(field, text)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, indices=row.indices, values=row.values,
                     n_tokens=np.int32(row.n_tokens), truncated=np.bool_(row.truncated))
        os.replace(tmp, path)


def _safe(encoder_id: str) -> str:
    """A folder name for an encoder id ('/' and other odd characters become '_')."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", encoder_id)


def _row(codes: SparseCodes, i: int) -> Row:
    indices, values = codes.row(i)
    return Row(indices.copy(), values.copy(), int(codes.n_tokens[i]), bool(codes.truncated[i]))


@dataclass
class EncodeCounts:
    """Texts the model encoded and texts the cache answered, over a run.

    >>> EncodeCounts().encoded
    0
    """

    encoded: int = 0
    cached: int = 0


def encode_cached(
    encoder: Encoder, events: Sequence[LLMEvent], cache: CodeCache | None, counts: EncodeCounts
) -> FeatureBatch:
    """``encoder.encode(events)``, answered from ``cache`` where every field of an event is
    there; the misses are encoded in chunks and stored. Without a cache, plain encode."""
    if cache is None:
        counts.encoded += len(FIELDS) * len(events)
        return encoder.encode(events)
    rows: dict[TextField, list[Row | None]] = {
        f: [cache.get(f, e.text(f)) for e in events] for f in FIELDS}
    missing = [i for i in range(len(events)) if any(rows[f][i] is None for f in FIELDS)]
    # An event with one field missing is encoded whole: only fully cached events count here.
    counts.cached += len(FIELDS) * (len(events) - len(missing))
    for start in range(0, len(missing), ENCODE_CHUNK):
        chunk = missing[start:start + ENCODE_CHUNK]
        # The encoder reads both fields of an event, so both count as encoded.
        counts.encoded += len(FIELDS) * len(chunk)
        batch = encoder.encode([events[i] for i in chunk])
        for f in FIELDS:
            for j, i in enumerate(chunk):
                row = _row(batch.codes(f), j)
                rows[f][i] = row
                cache.put(f, events[i].text(f), row)
    codes = {f: SparseCodes.from_arrays([r.indices for r in _all(rows[f])],
                                        [r.values for r in _all(rows[f])],
                                        [r.n_tokens for r in _all(rows[f])],
                                        [r.truncated for r in _all(rows[f])]) for f in FIELDS}
    return FeatureBatch(encoder_id=encoder.encoder_id, d_sae=encoder.d_sae, events=tuple(events),
                        prompt=codes["prompt"], response=codes["response"])


def _all(rows: list[Row | None]) -> list[Row]:
    out = [r for r in rows if r is not None]
    if len(out) != len(rows):  # every miss was encoded above; a gap is a bug here
        raise RuntimeError("a text was neither cached nor encoded")
    return out


__all__ = ["CodeCache", "Row", "EncodeCounts", "encode_cached", "FIELDS"]
