"""How well a label predicts where its feature fires, on held-out texts (``saewatch
label-quality``; figures in docs/BENCHMARKS.md, "Label quality").

A label *says the feature fires* on a token when one of its terms (:func:`label_terms`) is
there (every word of a label counts, function words too). Two readings of "there", both
reported:

- ``token``: a word term is (part of) the word the token belongs to; a bare-token term such
  as ``4``, ``,`` or ``'\\n'`` is the token itself (its text without blanks, or its repr);
- ``window``: a word term occurs in the token's label window (the token and the four before
  it, widened to whole words, as labels are made: :func:`label_window`); bare-token terms as
  above.

The feature *fires* on a token when its activation reaches the feature's presence threshold
``t_j`` (what makes it present in a document, :mod:`saewatch.encode.presence`), or, for the
looser figure, is nonzero. Per feature: precision = P(fires | label says so), recall =
P(label says so | fires); averaged over the features where each is defined, and pooled over
all tokens.

>>> codes = TokenCodes(np.array([1, 2, 1]), np.array([0, 0, 0]), np.array([[4], [4], [4]]),
...                    np.array([[0.0], [0.0], [3.0]], np.float16), ["x"], ["response"])
>>> words = {1: " the", 2: " capital"}
>>> r = evaluate_labels(codes, {4: "capital"}, words.__getitem__, np.ones(5), [4])
>>> r["features"][0]["window_present_precision"], r["features"][0]["window_present_recall"]
(0.5, 1.0)
>>> r["features"][0]["token_present_recall"]
0.0
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from saewatch.training.context_labels import (
    LABEL_WINDOW,
    all_words,
    label_terms,
    label_window,
    token_display,
)
from saewatch.training.tokencodes import TokenCodes

logger = logging.getLogger(__name__)


MODES = ("token", "window")
FIRINGS = ("present", "nonzero")


class TokenIndex:
    """Where each label term occurs in a corpus, per mode: word -> token rows (the token's
    own word, or its label window, holds it); token display -> rows of that token.

    >>> codes = TokenCodes(np.array([0, 1]), np.array([0, 0]), np.zeros((2, 1), np.int32),
    ...                    np.zeros((2, 1), np.float16), ["x"], ["response"])
    >>> index = TokenIndex(codes, [" the", " cat"].__getitem__)
    >>> index.says("cat", "token").tolist(), index.says("the", "window").tolist()
    ([False, True], [True, True])
    """

    def __init__(self, codes: TokenCodes, token_text: Callable[[int], str]) -> None:
        self.n = len(codes)
        words: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in MODES}
        tokens: dict[str, list[int]] = defaultdict(list)
        bounds = np.flatnonzero(np.diff(codes.doc_ids)) + 1
        start = 0
        for ids in np.split(codes.token_ids, bounds):
            texts = [token_text(int(t)) for t in ids]
            for pos, text in enumerate(texts):
                for shown in {token_display(text), text.strip()} - {""}:
                    tokens[shown].append(start + pos)
                for mode, size in (("token", 1), ("window", LABEL_WINDOW)):
                    for word in set(all_words(label_window(texts, pos, size))):
                        words[mode][word].append(start + pos)
            start += len(ids)
        self._words = {m: {k: np.asarray(v) for k, v in w.items()} for m, w in words.items()}
        self._tokens = {k: np.asarray(v) for k, v in tokens.items()}

    def says(self, label: str, mode: str = "window") -> np.ndarray:
        """Boolean per token row: the label says the feature fires there."""
        out = np.zeros(self.n, dtype=bool)
        for term in label_terms(label):
            found = self._words[mode] if term[0].isalpha() else self._tokens
            rows = found.get(term)
            if rows is not None:
                out[rows] = True
        return out


def feature_quality(says: np.ndarray, fires: np.ndarray) -> dict[str, float | int | None]:
    """Precision, recall and counts of one feature's label."""
    hit = int(np.sum(says & fires))
    n_says, n_fires = int(says.sum()), int(fires.sum())
    return {"says": n_says, "fires": n_fires, "both": hit,
            "precision": round(hit / n_says, 4) if n_says else None,
            "recall": round(hit / n_fires, 4) if n_fires else None}


def summarise(rows: Sequence[Mapping[str, object]], prefix: str = "") -> dict[str, object]:
    """Mean precision/recall over the features where defined, and pooled over tokens."""
    def mean(key: str) -> float | None:
        vals = [float(v) for r in rows if isinstance(v := r[f"{prefix}{key}"], float | int)]
        return round(float(np.mean(vals)), 4) if vals else None

    def total(key: str) -> int:
        return sum(int(v) for r in rows if isinstance(v := r[f"{prefix}{key}"], int))

    both, says, fires = total("both"), total("says"), total("fires")
    return {
        "mean_precision": mean("precision"), "mean_recall": mean("recall"),
        "features_with_precision": sum(1 for r in rows if r[f"{prefix}precision"] is not None),
        "features_with_recall": sum(1 for r in rows if r[f"{prefix}recall"] is not None),
        "pooled_precision": round(both / says, 4) if says else None,
        "pooled_recall": round(both / fires, 4) if fires else None,
    }


def evaluate_labels(codes: TokenCodes, labels: Mapping[int, str],
                    token_text: Callable[[int], str], thresholds: np.ndarray,
                    features: Sequence[int], index: TokenIndex | None = None) -> dict[str, object]:
    """Label quality of ``features`` on ``codes`` (see the module docstring)."""
    index = index or TokenIndex(codes, token_text)
    rows: list[dict[str, object]] = []
    for f in features:
        label = labels.get(f, "")
        act = codes.activation_of(f)
        fires = {"present": (act > 0) & (act >= thresholds[f]), "nonzero": act > 0}
        row: dict[str, object] = {"feature": f, "label": label,
                                  "base_rate": round(float(np.mean(fires["present"])), 5)}
        for mode in MODES:
            says = index.says(label, mode)
            for firing in FIRINGS:
                quality = feature_quality(says, fires[firing])
                row.update({f"{mode}_{firing}_{k}": v for k, v in quality.items()})
        rows.append(row)
    out: dict[str, object] = {
        f"{mode}_{firing}": summarise(rows, f"{mode}_{firing}_")
        for mode in MODES for firing in FIRINGS}
    out["mean_base_rate"] = (round(float(np.mean([float(str(r["base_rate"])) for r in rows])),
                                   5) if rows else None)
    out["features"] = rows
    return out


def sample_features(candidates: Sequence[int], n: int, seed: int) -> list[int]:
    """``n`` features drawn without replacement from ``candidates`` (sorted), seeded."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(sorted(candidates))
    return sorted(int(f) for f in rng.choice(pool, size=min(n, len(pool)), replace=False))


__all__ = ["FIRINGS", "MODES", "TokenIndex", "evaluate_labels", "feature_quality", "sample_features", "summarise"]
