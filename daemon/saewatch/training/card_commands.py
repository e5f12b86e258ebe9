"""What ``saewatch feature-cards`` and ``saewatch label-quality`` do (:mod:`saewatch.cli` only
parses their arguments).

``feature-cards`` reads token-level codes of the card part of the held-out corpus
(:mod:`saewatch.training.tokencodes`) with the configured SAE, builds one card per feature
(:mod:`saewatch.training.cards`), writes ``feature_cards.json.gz`` beside the SAE and, with
``labels_out``, a labels file whose labels are the cards' context labels.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from saewatch.config import EncodeSettings
from saewatch.encode.default import sae_folder
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.exceptions import EncodeError
from saewatch.encode.labels import MARK_CLOSE, MARK_OPEN, FeatureLabel, FeatureLabels
from saewatch.models.cards import CARDS_FILE, CardContext, FeatureCards
from saewatch.training.cards import build_cards
from saewatch.training.context_labels import NEVER_FIRED
from saewatch.training.label_quality import TokenIndex, evaluate_labels, sample_features
from saewatch.training.tokencodes import TokenCodes, corpus_texts, read_token_codes

logger = logging.getLogger(__name__)

LABEL_EXAMPLES = 4  # snippets per feature in the labels file (the cards keep more)
CORPUS = "AlpacaEval outputs never seen in SAE training ({part} part: {what})"
_PARTS = {"card": "instructions with index % 10 != 0", "eval": "instructions with index % 10 == 0"}


class TokenText:
    """Decodes single tokens once each (cards decode the same tokens thousands of times).

    >>> class Upper:
    ...     def decode(self, ids: list[int]) -> str:
    ...         return f"<{ids[0]}>"
    >>> text = TokenText(Upper())
    >>> text(7), text(7)
    ('<7>', '<7>')
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self._cache:
            self._cache[token_id] = str(self._tokenizer.decode([token_id]))
        return self._cache[token_id]


def load_encoder(settings: EncodeSettings) -> SAEEncoder:
    """The configured encoder without presence thresholds (cards read raw token codes)."""
    return SAEEncoder.from_settings(settings.model_copy(update={"presence_thresholds": "none"}))


def token_codes(encoder: SAEEncoder, part: str, tokens: int, cache: Path | None) -> TokenCodes:
    """Token codes of ``tokens`` corpus tokens of ``part``, read once into ``cache``."""
    if cache is not None and cache.is_file():
        codes = TokenCodes.load(cache)
        if int(codes.ids.max(initial=0)) >= encoder.d_sae:
            raise EncodeError(f"{cache} holds codes of a wider SAE: delete it or give another")
        return codes
    started = time.monotonic()
    codes = read_token_codes(
        encoder.reader, encoder.sae, corpus_texts(part), tokens,
        progress=lambda n, m: logger.info("%s corpus: %d/%d tokens", part, n, m))
    logger.info("%s corpus read in %.0f s", part, time.monotonic() - started)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        codes.save(cache)
    return codes


def run_feature_cards(settings: EncodeSettings, tokens: int, output: Path | None,
                      labels_out: Path | None, cache: Path | None) -> dict[str, object]:
    """Build and write the cards (and labels) of the configured SAE; say what was made."""
    encoder = load_encoder(settings)
    started = time.monotonic()
    codes = token_codes(encoder, "card", tokens, cache)
    read_s = time.monotonic() - started
    cards = build_cards(codes, encoder.d_sae, TokenText(encoder.reader.text.tokenizer),
                        sae_id=encoder.encoder_id,
                        corpus=CORPUS.format(part="card", what=_PARTS["card"]))
    output = output or _sae_folder(settings) / CARDS_FILE
    cards.save(output)
    result: dict[str, object] = {
        "output": str(output), "bytes": output.stat().st_size, "features": len(cards.cards),
        "fired": sum(1 for c in cards.cards if c.fired), "tokens": cards.tokens,
        "texts": cards.texts, "read_seconds": round(read_s, 1),
        "build_seconds": round(time.monotonic() - started - read_s, 1)}
    if labels_out is not None:
        labels_from_cards(cards).write(labels_out)
        result["labels"] = str(labels_out)
    return result


def run_label_quality(settings: EncodeSettings, tokens: int, labels: dict[str, Path],
                      features: int, seed: int, cache: Path | None) -> dict[str, object]:
    """Precision and recall of each labels file's labels on the evaluation part."""
    from saewatch.encode.labels import load_labels
    from saewatch.encode.presence import PresenceThresholds

    encoder = load_encoder(settings)
    codes = token_codes(encoder, "eval", tokens, cache)
    presence = PresenceThresholds.load(_sae_folder(settings) / "presence_thresholds.json")
    text = TokenText(encoder.reader.text.tokenizer)
    loaded = {name: {f.feature: f.label for f in load_labels(path, encoder.d_sae).features}
              for name, path in labels.items()}
    # The same features for every labels file: those each file says fired in its corpus.
    alive = set.intersection(*({f for f, label in by.items() if label != NEVER_FIRED}
                               for by in loaded.values()))
    chosen = sample_features(sorted(alive), features, seed)
    index = TokenIndex(codes, text)
    out: dict[str, object] = {"tokens": len(codes), "texts": len(codes.texts),
                              "corpus": CORPUS.format(part="eval", what=_PARTS["eval"]),
                              "seed": seed, "sampled_from": len(alive), "features": chosen}
    out["labels"] = {name: evaluate_labels(codes, by_feature, text, presence.values, chosen,
                                           index) for name, by_feature in loaded.items()}
    return out


class _LabelsFile:
    def __init__(self, labels: FeatureLabels) -> None:
        self.labels = labels

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.labels.model_dump_json(indent=1, exclude_none=True) + "\n",
                        encoding="utf-8")


def labels_from_cards(cards: FeatureCards) -> _LabelsFile:
    """A labels file (the encoder's format) carrying the cards' labels, tokens and contexts."""
    features = [
        FeatureLabel(
            feature=c.feature, label=c.label, top_tokens=[t.token for t in c.top_tokens[:5]],
            examples=[snippet(x) for x in c.contexts[:LABEL_EXAMPLES]],
            token_frequency=c.density, max_activation=c.max_activation or None)
        for c in cards.cards
    ]
    return _LabelsFile(FeatureLabels(
        sae_id=cards.sae_id.split("/presence=")[0] if cards.sae_id else None,
        d_sae=cards.d_sae, method=f"context labels of feature cards: {cards.method}; corpus: "
        f"{cards.corpus}, {cards.tokens} tokens", features=features))


def snippet(context: CardContext) -> str:
    """A context as one line with its peak token marked ⟦like this⟧."""
    peak = context.peak
    text = ("".join(context.tokens[:peak]) + MARK_OPEN + context.tokens[peak] + MARK_CLOSE
            + "".join(context.tokens[peak + 1 :]))
    return " ".join(text.split())[:300]


def _sae_folder(settings: EncodeSettings) -> Path:
    folder = sae_folder(settings)
    if folder is None:
        raise EncodeError("the SAE comes from the hub and has no folder to write the cards "
                          "beside: give --output FILE")
    return folder


def dumps(result: dict[str, object]) -> str:
    return json.dumps(result, indent=2)
