"""Hook activations cached on disk in shards, so an interrupted extraction resumes.

Reading 5M tokens of activations takes most of an hour on a CPU; an ``.npz`` written once at
the end loses all of it to one interruption. :class:`ActivationCache` writes a shard every
:data:`SHARD_TEXTS` texts and a manifest after each (atomically: temporary file, then
rename); a rerun over the same texts (same key) skips the texts its shards hold.

>>> import tempfile
>>> cache = ActivationCache(Path(tempfile.mkdtemp()) / "train", key="demo")
>>> cache.done_texts(), cache.tokens()
(0, 0)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from saewatch.encode.exceptions import TrainingError
from saewatch.encode.reader import ActivationReader
from saewatch.models import TextField
from saewatch.training.train import ActivationSet, read_activations

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SHARD_TEXTS = 512  # texts per shard: ~150k tokens, a few minutes of CPU forwards


def texts_key(texts: Sequence[tuple[str, TextField]], *parts: object) -> str:
    """A digest of the text list (order included) and whatever else shapes the activations."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
    for text, field in texts:
        digest.update(field.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\1")
    return digest.hexdigest()[:16]


class ActivationCache:
    """A directory of activation shards of one text list, identified by ``key``.

    Parameters
    ----------
    directory
        Where shards and the manifest live (created on first write).
    key
        :func:`texts_key` of the texts and settings; a directory holding another key is an
        error (delete it or choose another ``--work-dir``), never silently mixed.
    """

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = directory
        self.key = key
        self._shards: list[dict[str, int | str]] = []
        self._complete = False
        manifest = directory / MANIFEST
        if manifest.is_file():
            data = json.loads(manifest.read_text())
            if data.get("key") != key:
                raise TrainingError(
                    f"{directory} caches activations of other texts or settings (key "
                    f"{data.get('key')}, wanted {key}): delete it or pass another --work-dir"
                )
            self._shards = list(data["shards"])
            self._complete = bool(data.get("complete", False))

    def done_texts(self) -> int:
        """Texts (a prefix of the list) whose activations are on disk."""
        return int(self._shards[-1]["texts_end"]) if self._shards else 0

    def tokens(self) -> int:
        return sum(int(s["tokens"]) for s in self._shards)

    def extract(
        self,
        reader: ActivationReader,
        texts: Sequence[tuple[str, TextField]],
        max_tokens: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> ActivationSet:
        """Activations of ``texts`` in order until ``max_tokens``, resuming from the shards.

        A cache holding fewer tokens is extended; one holding more is used whole.
        """
        start = self.done_texts()
        total = self.tokens()
        if start:
            logger.info("%s: resuming after %d texts, %d tokens", self.directory, start, total)
        while total < max_tokens and start < len(texts):
            end = min(len(texts), start + SHARD_TEXTS)
            shard = read_activations(reader, texts[start:end], start, max_tokens - total)
            end = start + len(shard.texts)
            total += len(shard.acts)
            self._write_shard(shard, start, end)
            start = end
            if progress is not None:
                progress(total, max_tokens)
        if start >= len(texts) and not self._complete:
            self._complete = True  # every text read: a larger max_tokens adds nothing
            self._write_manifest()
        if not self._shards:
            raise TrainingError("no tokens to train on: the corpus is empty")
        return self.load([t for t, _ in texts])

    def load(self, texts: list[str]) -> ActivationSet:
        """All shards as one set, filled into one preallocated array (no 2x peak)."""
        n = self.tokens()
        first = np.load(self.directory / str(self._shards[0]["file"]))
        acts = np.empty((n, first["acts"].shape[1]), dtype=np.float16)
        token_ids = np.empty(n, dtype=np.int32)
        doc_ids = np.empty(n, dtype=np.int32)
        at = 0
        for shard in self._shards:
            data = np.load(self.directory / str(shard["file"]))
            size = len(data["token_ids"])
            acts[at : at + size] = data["acts"]
            token_ids[at : at + size] = data["token_ids"]
            doc_ids[at : at + size] = data["doc_ids"]
            at += size
        used = int(self._shards[-1]["texts_end"])
        return ActivationSet(acts, token_ids, doc_ids, texts[:used])

    def _write_shard(self, shard: ActivationSet, start: int, end: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{len(self._shards):05d}.npz"
        tmp = self.directory / f".{name}.tmp.npz"
        np.savez(tmp, acts=shard.acts, token_ids=shard.token_ids, doc_ids=shard.doc_ids)
        os.replace(tmp, self.directory / name)
        self._shards.append(
            {"file": name, "texts_start": start, "texts_end": end, "tokens": len(shard.acts)}
        )
        self._write_manifest()

    def _write_manifest(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{MANIFEST}.tmp"
        body = {"key": self.key, "complete": self._complete, "shards": self._shards}
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        os.replace(tmp, self.directory / MANIFEST)
