"""Building feature cards from token-level codes of a held-out corpus (``saewatch feature-cards``;
the card model: :mod:`saewatch.models.cards`).

Per feature, over the corpus tokens it fires on (nonzero activation):

- **density**: the share of corpus tokens it fires on, and the texts it fires in;
- **top tokens**: the tokens it fires on most often (share of its firings);
- **contexts**: its strongest firing in each text, the ``CONTEXTS`` strongest texts, each as a
  window of ``BEFORE`` tokens before and ``AFTER`` after the peak with the feature's activation
  on every token of the window (so a page can mark where it fires and how strongly);
- **neighbours**: the features firing on the same tokens most often beyond chance, by NPMI
  ``log(p(i,j) / (p(i) p(j))) / -log p(i,j)`` over corpus tokens, among pairs seen on at least
  ``MIN_JOINT`` tokens;
- **label**: a short label read off its contexts (:mod:`saewatch.training.context_labels`).

>>> codes = TokenCodes(np.array([7, 8, 9, 7]), np.array([0, 0, 0, 1]),
...                    np.array([[0, 1], [1, 0], [0, 1], [0, 1]]),
...                    np.array([[2.0, 1.0], [1.5, 0.0], [3.0, 0.0], [1.0, 0.5]], np.float16),
...                    ["x", "y"], ["response", "response"])
>>> stats = firing_stats(codes, d_sae=3)
>>> stats.fired.tolist(), stats.documents.tolist(), stats.max_activation.tolist()
([3, 3, 0], [2, 2, 0], [3.0, 1.5, 0.0])
>>> [(int(r), round(float(v), 1)) for r, v in stats.best[0]]
[(2, 3.0), (3, 1.0)]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from saewatch.models.cards import CardContext, CardNeighbour, FeatureCard, FeatureCards, TokenCount
from saewatch.training.context_labels import (
    LABEL_CONTEXTS,
    LABEL_WINDOW,
    context_label,
    words_of,
)
from saewatch.training.tokencodes import TokenCodes

logger = logging.getLogger(__name__)

CONTEXTS = 8  # contexts kept on a card: a screen of examples, and the file stays a few MB
BEFORE, AFTER = 12, 3  # window tokens around the peak: enough to read what precedes it
TOP_TOKENS = 8
NEIGHBOURS = 6
# Pairs seen together on fewer corpus tokens have an NPMI that is mostly noise (a pair of two
# rare features met once scores close to 1).
MIN_JOINT = 5
DECIMALS = 2  # activations in the file: two decimals are what a page shows


@dataclass(frozen=True)
class FiringStats:
    """Per feature: tokens and texts fired on, max activation, and its best firing per text.

    ``best[f]`` lists ``(row, activation)`` of the strongest firing of feature ``f`` in each
    text, the ``LABEL_CONTEXTS`` strongest texts first.
    """

    fired: np.ndarray
    documents: np.ndarray
    max_activation: np.ndarray
    best: list[list[tuple[int, float]]]
    rows: np.ndarray  # per firing: token row, feature, activation
    features: np.ndarray
    values: np.ndarray


def firing_stats(codes: TokenCodes, d_sae: int, keep: int = LABEL_CONTEXTS) -> FiringStats:
    """Counts and best firings per feature (one vectorised pass over all firings)."""
    mask = codes.vals > 0
    rows = np.nonzero(mask)[0].astype(np.int64)
    features = codes.ids[mask].astype(np.int64)
    values = codes.vals[mask].astype(np.float32)
    fired = np.bincount(features, minlength=d_sae)[:d_sae]
    docs = codes.doc_ids[rows].astype(np.int64)
    n_docs = max(len(codes.texts), int(docs.max(initial=0)) + 1)
    pair = features * n_docs + docs
    # Strongest firing per (feature, text): sort by pair, strongest first within it.
    order = np.lexsort((-values, pair))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair[order][1:] != pair[order][:-1]
    top = order[first]
    documents = np.bincount(features[top], minlength=d_sae)[:d_sae]
    max_activation = np.zeros(d_sae, dtype=np.float32)
    np.maximum.at(max_activation, features, values)
    by_feature = top[np.lexsort((-values[top], features[top]))]
    starts = np.searchsorted(features[by_feature], np.arange(d_sae))
    ends = np.searchsorted(features[by_feature], np.arange(d_sae), side="right")
    best = [[(int(rows[i]), float(values[i])) for i in by_feature[s : min(e, s + keep)]]
            for s, e in zip(starts, ends, strict=True)]
    return FiringStats(fired, documents, max_activation, best, rows, features, values)


def top_tokens(codes: TokenCodes, stats: FiringStats, d_sae: int,
               token_text: Callable[[int], str], n: int = TOP_TOKENS) -> list[list[TokenCount]]:
    """Per feature, the ``n`` tokens it fires on most often."""
    token = codes.token_ids[stats.rows].astype(np.int64)
    vocab = int(token.max(initial=0)) + 1
    keys, counts = np.unique(stats.features * vocab + token, return_counts=True)
    feats = keys // vocab
    order = np.lexsort((-counts, feats))
    out: list[list[TokenCount]] = [[] for _ in range(d_sae)]
    for i in order:
        f = int(feats[i])
        if len(out[f]) < n:
            share = float(counts[i]) / max(int(stats.fired[f]), 1)
            out[f].append(TokenCount(token=token_text(int(keys[i] % vocab)),
                                     count=int(counts[i]), share=round(share, 4)))
    return out


def npmi_neighbours(codes: TokenCodes, stats: FiringStats, d_sae: int,
                    n: int = NEIGHBOURS, min_joint: int = MIN_JOINT) -> list[list[CardNeighbour]]:
    """Per feature, the ``n`` features of highest token-level NPMI with it."""
    total = len(codes)
    x = sparse.csr_matrix((np.ones(len(stats.rows), np.float32), (stats.rows, stats.features)),
                          shape=(total, d_sae))
    x.data[:] = 1.0  # a feature counted twice on one token (never for TopK) still counts once
    joint = (x.T @ x).tocoo()
    keep = (joint.row != joint.col) & (joint.data >= min_joint)
    i, j, c = joint.row[keep], joint.col[keep], joint.data[keep].astype(np.float64)
    p_i = stats.fired[i] / total
    p_j = stats.fired[j] / total
    p_ij = c / total
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(p_ij < 1, np.log(p_ij / (p_i * p_j)) / -np.log(p_ij), 1.0)
    order = np.lexsort((-score, i))
    out: list[list[CardNeighbour]] = [[] for _ in range(d_sae)]
    for k in order:
        f = int(i[k])
        if len(out[f]) < n:
            out[f].append(CardNeighbour(feature=int(j[k]),
                                        npmi=round(float(np.clip(score[k], -1, 1)), 3),
                                        count=int(c[k])))
    return out


def context_of(codes: TokenCodes, feature: int, row: int, token_text: Callable[[int], str],
               before: int = BEFORE, after: int = AFTER) -> CardContext:
    """The window around token ``row`` of its text, with ``feature``'s activations on it."""
    doc = codes.doc_ids[row]
    lo = max(row - before, 0)
    while codes.doc_ids[lo] != doc:
        lo += 1
    hi = min(row + after + 1, len(codes))
    while codes.doc_ids[hi - 1] != doc:
        hi -= 1
    acts = codes.activation_of(feature, slice(lo, hi))
    return CardContext(
        tokens=tuple(token_text(int(t)) for t in codes.token_ids[lo:hi]),
        activations=tuple(round(float(a), DECIMALS) for a in acts),
        field="prompt" if codes.fields[int(doc)] == "prompt" else "response",
    )


def build_cards(codes: TokenCodes, d_sae: int, token_text: Callable[[int], str],
                sae_id: str | None = None, corpus: str = "") -> FeatureCards:
    """One card per feature of an SAE of width ``d_sae`` from ``codes``."""
    stats = firing_stats(codes, d_sae)
    tokens = top_tokens(codes, stats, d_sae, token_text)
    neighbours = npmi_neighbours(codes, stats, d_sae)
    background = WordBackground.of(codes, token_text)
    cards = []
    for f in range(d_sae):
        contexts = [context_of(codes, f, row, token_text) for row, _ in stats.best[f]]
        cards.append(FeatureCard(
            feature=f,
            label=context_label(contexts, tokens[f], background.rate),
            density=round(float(stats.fired[f]) / max(len(codes), 1), 6),
            fired=int(stats.fired[f]), documents=int(stats.documents[f]),
            max_activation=round(float(stats.max_activation[f]), DECIMALS),
            top_tokens=tuple(tokens[f]), contexts=tuple(contexts[:CONTEXTS]),
            neighbours=tuple(neighbours[f])))
        if f % 512 == 511:
            logger.info("cards: %d/%d", f + 1, d_sae)
    return FeatureCards(
        sae_id=sae_id, d_sae=d_sae, corpus=corpus, tokens=len(codes), texts=len(codes.texts),
        method=(f"strongest firing per text, top {CONTEXTS} texts, {BEFORE}+1+{AFTER} token "
                f"windows; token-level NPMI (pairs on >= {MIN_JOINT} tokens); labels from the "
                f"top {LABEL_CONTEXTS} contexts' words against the corpus"),
        cards=cards)


class WordBackground:
    """How often a word occurs in a window of the corpus: the baseline a label word must beat.

    >>> bg = WordBackground({"the": 50, "capital": 1}, tokens=100)
    >>> bg.rate("the") > bg.rate("capital") > bg.rate("unseen") > 0
    True
    """

    def __init__(self, counts: dict[str, int], tokens: int) -> None:
        self.counts = counts
        self.tokens = max(tokens, 1)

    @classmethod
    def of(cls, codes: TokenCodes, token_text: Callable[[int], str]) -> WordBackground:
        """Word counts over the corpus tokens as read (texts cut where the encoder cuts them)."""
        counts: dict[str, int] = {}
        bounds = np.flatnonzero(np.diff(codes.doc_ids)) + 1
        for ids in np.split(codes.token_ids, bounds):
            for word in words_of("".join(token_text(int(t)) for t in ids)):
                counts[word] = counts.get(word, 0) + 1
        return cls(counts, len(codes))

    def rate(self, word: str) -> float:
        """Chance that a label window (``LABEL_WINDOW`` tokens) holds ``word`` at random."""
        return min(1.0, (self.counts.get(word, 0) + 0.5) * LABEL_WINDOW / self.tokens)


__all__ = ["FiringStats", "WordBackground", "build_cards", "context_of", "firing_stats",
           "npmi_neighbours", "top_tokens"]
