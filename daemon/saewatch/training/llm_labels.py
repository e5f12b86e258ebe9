"""``saewatch llm-labels``: labels written by the optional LLM (``labels.llm``) from feature
cards' top contexts, each scored on held-out contexts and kept only if the score passes.

For a feature, the card's strongest contexts (tokens where it fires marked) are what the LLM
labels from (:data:`EXPLAIN`); the card's remaining contexts are held-out contexts where it
fires, and windows taken from other features' cards on which the encoder finds it absent
(encoded here, so "does not fire" is measured, not assumed) are held-out contexts where it does
not. The output is a labels file (``encode.labels_path``): the cards' labels, with the LLM's
where they were kept.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from saewatch.config import LLMSettings
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.labels import FeatureLabel, FeatureLabels
from saewatch.llm.client import ChatClient
from saewatch.llm.labels import LabelVerdict, llm_label, mark
from saewatch.models.cards import CardContext, FeatureCard, FeatureCards

EXPLAIN = 4  # contexts the LLM labels from; the card's other 4 of 8 are held out
SILENT = 4  # held-out contexts where the feature does not fire
POOL = 240  # windows of other cards encoded as candidates for SILENT


@dataclass(frozen=True)
class FeatureOutcome:
    feature: int
    previous: str
    verdict: LabelVerdict


def _text(context: CardContext) -> str:
    return "".join(context.tokens)


def silent_pool(cards: FeatureCards, encoder: SAEEncoder, rng: random.Random,
                size: int = POOL) -> list[tuple[str, frozenset[int]]]:
    """``size`` context windows of random cards with the features the encoder finds present
    in each window on its own."""
    contexts = [c for card in cards.cards for c in card.contexts[:2]]
    chosen = rng.sample(contexts, min(size, len(contexts)))
    texts = [_text(c) for c in chosen]
    codes = encoder.encode_texts(texts, "response")
    return [(text, frozenset(int(i) for i in codes.row(k)[0])) for k, text in enumerate(texts)]


def label_features(
    cards: FeatureCards,
    features: Sequence[int],
    client: ChatClient,
    settings: LLMSettings,
    pool: list[tuple[str, frozenset[int]]],
) -> list[FeatureOutcome]:
    """LLM labels of ``features`` (those whose cards hold more than :data:`EXPLAIN` contexts
    and for which the pool has :data:`SILENT` windows without them)."""
    out = []
    for feature in features:
        card = cards.get(feature)
        if card is None or len(card.contexts) <= EXPLAIN:
            continue
        silent = [text for text, present in pool if feature not in present][:SILENT]
        if len(silent) < SILENT:
            continue
        firing = [mark(c.tokens, c.activations) for c in card.contexts]
        verdict = llm_label(client, firing, silent, settings.min_label_score, explain=EXPLAIN)
        out.append(FeatureOutcome(feature, card.label, verdict))
    return out


def merged_labels(cards: FeatureCards, outcomes: Sequence[FeatureOutcome],
                  model: str) -> FeatureLabels:
    """The cards' labels, with the LLM's where kept (its score in the method line)."""
    kept = {o.feature: o.verdict.label for o in outcomes if o.verdict.kept}
    features = [_label(card, kept.get(card.feature)) for card in cards.cards]
    method = (f"{cards.method}; LLM labels ({model}) kept for {len(kept)} of {len(outcomes)} "
              f"features scored (balanced accuracy on held-out contexts >= threshold)")
    return FeatureLabels(sae_id=cards.sae_id, d_sae=cards.d_sae, method=method,
                         features=[f for f in features if f.label])


def _label(card: FeatureCard, llm: str | None) -> FeatureLabel:
    return FeatureLabel(feature=card.feature, label=llm or card.label,
                        top_tokens=[t.token for t in card.top_tokens[:5]],
                        token_frequency=card.density, max_activation=card.max_activation)


def summary(outcomes: Sequence[FeatureOutcome], output: Path | None) -> dict[str, object]:
    """What ``saewatch llm-labels`` prints: per feature and in total."""
    scored = [o.verdict for o in outcomes]
    kept = [v for v in scored if v.kept]
    n = max(1, len(scored))
    return {
        "features_scored": len(scored),
        "labels_kept": len(kept),
        "mean_score": round(sum(v.score for v in scored) / n, 3),
        "mean_precision": round(sum(v.precision for v in scored) / n, 3),
        "mean_recall": round(sum(v.recall for v in scored) / n, 3),
        "output": None if output is None else str(output),
        "features": [
            {"feature": o.feature, "previous": o.previous, "llm_label": o.verdict.label,
             "score": round(o.verdict.score, 3), "precision": round(o.verdict.precision, 3),
             "recall": round(o.verdict.recall, 3), "kept": o.verdict.kept}
            for o in outcomes
        ],
    }
