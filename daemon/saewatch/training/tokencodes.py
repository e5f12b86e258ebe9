"""Token-level SAE codes of a held-out corpus: what feature cards and label checks read.

Every text is tokenized and read exactly as the encoder does (chat template per field,
``encode.max_tokens_per_text``); each text token keeps its strongest ``K`` nonzero feature
activations (all of them for a TopK SAE of ``k <= K``). The texts come from AlpacaEval outputs
the default SAE never saw in training (:mod:`saewatch.training.corpus`), split by instruction
into a *card* part (cards and labels are built from it) and an *evaluation* part (labels are
checked on it), so no label is judged on the contexts it was made from.

>>> is_eval_instruction(0), is_eval_instruction(5), is_eval_instruction(7)
(True, False, False)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saewatch.encode.reader import ActivationReader
from saewatch.models import TextField
from saewatch.training.corpus import TRAIN_EXCLUDED_MODELS, is_held_out_instruction

logger = logging.getLogger(__name__)

# Features kept per token: a TopK SAE of k <= 64 keeps all of its nonzero ones.
MAX_PER_TOKEN = 64
EVAL_EVERY = 10  # instruction index % 10 == 0: the evaluation part (81 of 805 instructions)
TEXTS_PER_STEP = 64  # texts tokenized and forwarded per step: paces progress and the cut
# NullModel's 805 responses are one and the same garbage string.
CORPUS_MODELS = sorted(TRAIN_EXCLUDED_MODELS - {"NullModel"})


def is_eval_instruction(index: int) -> bool:
    """Whether instruction ``index`` belongs to the evaluation part (else the card part)."""
    return index % EVAL_EVERY == 0


@dataclass
class TokenCodes:
    """Per text token: its token id, its document, and its strongest features.

    ``ids[t, j]``/``vals[t, j]`` are the feature ids and activations of token ``t`` (``vals``
    0 where fewer fired); the tokens of one document are contiguous and in text order.

    >>> codes = TokenCodes(np.array([5, 6]), np.array([0, 0]), np.array([[1, 2], [2, 0]]),
    ...                    np.array([[0.5, 1.0], [2.0, 0.0]], np.float16), ["a b"], ["response"])
    >>> len(codes), codes.activation_of(2).tolist()
    (2, [1.0, 2.0])
    """

    token_ids: np.ndarray  # [n] int32
    doc_ids: np.ndarray  # [n] int32, index into ``texts``
    ids: np.ndarray  # [n, K] int32
    vals: np.ndarray  # [n, K] float16
    texts: list[str]
    fields: list[str]

    def __len__(self) -> int:
        return len(self.token_ids)

    def activation_of(self, feature: int, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Activation of ``feature`` on the tokens ``rows`` (default: all), 0 where it did not
        fire, as float32."""
        ids = self.ids if rows is None else self.ids[rows]
        vals = self.vals if rows is None else self.vals[rows]
        hit = (ids == feature) & (vals > 0)
        summed: np.ndarray = np.where(hit, vals.astype(np.float32), 0.0).sum(axis=1)
        return summed

    def save(self, path: Path) -> None:
        np.savez_compressed(path, token_ids=self.token_ids, doc_ids=self.doc_ids, ids=self.ids,
                            vals=self.vals, texts=np.asarray(self.texts, dtype=object),
                            fields=np.asarray(self.fields, dtype=object))

    @classmethod
    def load(cls, path: Path) -> TokenCodes:
        data = np.load(path, allow_pickle=True)
        return cls(data["token_ids"], data["doc_ids"], data["ids"], data["vals"],
                   [str(t) for t in data["texts"]], [str(f) for f in data["fields"]])


def corpus_texts(part: str, root: Path | None = None, seed: int = 1) -> list[tuple[str, TextField]]:
    """Texts of the ``"card"`` or ``"eval"`` part, shuffled with ``seed``.

    Both hold only text the default SAE was not trained on: responses of the models kept out
    of training, and prompts of held-out instructions. ``eval`` takes the instructions of
    :func:`is_eval_instruction`, ``card`` the others.
    """
    from saewatch.datasets import read_alpaca

    texts: list[tuple[str, TextField]] = []
    for k, model in enumerate(CORPUS_MODELS):
        for row in read_alpaca(model, root):
            if is_eval_instruction(row.index) != (part == "eval"):
                continue
            if k == 0 and is_held_out_instruction(row.index):
                texts.append((row.instruction, "prompt"))
            if row.output.strip():
                texts.append((row.output, "response"))
    random.Random(seed).shuffle(texts)
    return texts


@torch.no_grad()
def read_token_codes(
    reader: ActivationReader,
    sae: torch.nn.Module,
    texts: Sequence[tuple[str, TextField]],
    max_tokens: int,
    progress: Callable[[int, int], None] | None = None,
) -> TokenCodes:
    """Token codes of ``texts`` (in order) until ``max_tokens`` tokens have been read."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    kept: list[tuple[str, TextField]] = []
    total = 0
    for start in range(0, len(texts), TEXTS_PER_STEP):
        chunk = texts[start : start + TEXTS_PER_STEP]
        docs = [reader.tokenize([t], f)[0] for t, f in chunk]
        for batch in reader.iter_batches(docs):
            feats = sae.encode(batch.acts)  # type: ignore[operator]
            vals, ids = feats.topk(min(MAX_PER_TOKEN, feats.shape[1]), dim=1)
            local = batch.doc_index.cpu().numpy()
            doc = (np.asarray(batch.docs)[local] + len(kept)).astype(np.int32)
            parts.append((batch.token_ids.cpu().numpy().astype(np.int32), doc,
                          ids.cpu().numpy().astype(np.int32),
                          vals.relu().cpu().numpy().astype(np.float16)))
            total += len(local)
        kept.extend(chunk)
        if progress is not None:
            progress(total, max_tokens)
        if total >= max_tokens:
            break
    return _assemble(parts, kept)


def _assemble(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
              kept: list[tuple[str, TextField]]) -> TokenCodes:
    token_ids, doc_ids, ids, vals = (np.concatenate([p[i] for p in parts]) for i in range(4))
    # Batches group documents by length: put each document's tokens together, in text order
    # (a stable sort keeps the order of tokens within a document).
    order = np.argsort(doc_ids, kind="stable")
    width = int((vals > 0).sum(axis=1).max(initial=1))  # drop columns no token filled
    return TokenCodes(token_ids[order], doc_ids[order], ids[order][:, :width],
                      vals[order][:, :width], [t for t, _ in kept], [f for _, f in kept])
