"""Deriving feature labels from corpus activations: the top activating tokens per feature and
snippets with the activating token marked (``saewatch label-features``).

The labels file format, and reading it at run time, stay with the encoder
(:mod:`saewatch.encode.labels`); this is the tooling that writes one.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import torch
from sae_lens import SAE

from saewatch.encode.labels import MARK_CLOSE, MARK_OPEN, FeatureLabel, FeatureLabels
from saewatch.training.train import ActivationSet

logger = logging.getLogger(__name__)

TOP_EXAMPLES = 24  # top activations kept per feature: enough for a stable top-token tally
SNIPPETS = 4
SNIPPET_TOKENS_BEFORE = 14
SNIPPET_TOKENS_AFTER = 4


@torch.no_grad()
def top_activations(
    sae: SAE, acts: np.ndarray, k: int = TOP_EXAMPLES, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per feature the ``k`` largest activations ``[k, d_sae]``, their token rows and fire counts."""
    d_sae = int(sae.cfg.d_sae)
    best_v = torch.full((k, d_sae), -1.0)
    best_i = torch.zeros((k, d_sae), dtype=torch.long)
    counts = torch.zeros(d_sae, dtype=torch.long)
    for start in range(0, len(acts), chunk):
        feats = sae.encode(torch.from_numpy(acts[start : start + chunk]).float())
        counts += (feats > 0).sum(0)
        top_k = min(k, feats.shape[0])
        v, i = feats.topk(top_k, dim=0)
        merged_v = torch.cat([best_v, v])
        merged_i = torch.cat([best_i, i + start])
        order = merged_v.topk(k, dim=0).indices
        best_v = merged_v.gather(0, order)
        best_i = merged_i.gather(0, order)
    return best_v, best_i, counts


def build_labels(
    sae: SAE, data: ActivationSet, tokenizer: Any, sae_id: str | None = None
) -> FeatureLabels:
    """Label every feature by its top activating tokens and contexts in ``data``."""
    values, rows, counts = top_activations(sae, data.acts)
    vocab = _TokenText(tokenizer)
    features = []
    for f in range(int(sae.cfg.d_sae)):
        active = values[:, f] > 0
        if not bool(active.any()):
            features.append(
                FeatureLabel(feature=f, label="(never fired in the corpus)", token_frequency=0.0)
            )
            continue
        hits = rows[:, f][active].tolist()
        tally = Counter(vocab.token(int(data.token_ids[r])) for r in hits)
        top_tokens = [t for t, _ in tally.most_common(5)]
        shown = [t.strip() or repr(t) for t in top_tokens[:3]]
        features.append(
            FeatureLabel(
                feature=f,
                label=" / ".join(dict.fromkeys(shown))[:200],
                top_tokens=top_tokens,
                examples=[_snippet(data, r, vocab) for r in hits[:SNIPPETS]],
                token_frequency=float(counts[f]) / len(data.acts),
                max_activation=round(float(values[0, f]), 3),
            )
        )
    return FeatureLabels(
        sae_id=sae_id,
        d_sae=int(sae.cfg.d_sae),
        method=f"top {TOP_EXAMPLES} activating tokens over {len(data.acts)} corpus tokens",
        features=features,
    )


class _TokenText:
    """Decodes single tokens once each (labels decode the same tokens thousands of times)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def token(self, token_id: int) -> str:
        if token_id not in self._cache:
            self._cache[token_id] = self._tokenizer.decode([token_id])
        return self._cache[token_id]

    def text(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids))


def _snippet(data: ActivationSet, row: int, vocab: _TokenText) -> str:
    doc = data.doc_ids[row]
    lo = row
    while lo > 0 and row - lo < SNIPPET_TOKENS_BEFORE and data.doc_ids[lo - 1] == doc:
        lo -= 1
    hi = row + 1
    while hi < len(data.doc_ids) and hi - row <= SNIPPET_TOKENS_AFTER and data.doc_ids[hi] == doc:
        hi += 1
    ids = data.token_ids
    before = vocab.text(ids[lo:row].tolist())
    after = vocab.text(ids[row + 1 : hi].tolist())
    text = f"{before}{MARK_OPEN}{vocab.token(int(ids[row]))}{MARK_CLOSE}{after}"
    return " ".join(text.split())[:300]
