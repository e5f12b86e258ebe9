"""Feature cards: what one SAE feature does, read off a held-out corpus (like a Neuronpedia page).

A card holds the feature's top-activating contexts (token windows with the feature's activation
on every token), how often it fires, the tokens it fires on most and the features it fires
together with (NPMI over corpus tokens). ``saewatch feature-cards`` builds a cards file for an
SAE (``feature_cards.json.gz``, shipped beside the default SAE); the API and the feature page
serve it, adding what the live state knows (the feature's share per model version).

Loading needs neither torch nor the encoder, so an aggregator serves cards without a model.

>>> ctx = CardContext(tokens=("The", " capital", " of"), activations=(0.0, 3.5, 0.4),
...                   field="response")
>>> ctx.peak, ctx.activation
(1, 3.5)
>>> cards = FeatureCards(d_sae=8, cards=[FeatureCard(feature=3, label="capital cities",
...                                                  density=0.001, contexts=(ctx,))])
>>> cards.get(3).label, cards.get(4)
('capital cities', None)
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from saewatch.errors import SaewatchError
from saewatch.models.events import TextField

logger = logging.getLogger(__name__)

CARDS_FILE = "feature_cards.json.gz"


class CardsError(SaewatchError):
    """A feature cards file is missing or malformed: rebuild it with ``saewatch feature-cards``."""


class CardContext(BaseModel):
    """One top-activating context: a window of tokens and the feature's activation on each."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: tuple[str, ...] = Field(description="The window's tokens, as text, in order.")
    activations: tuple[float, ...] = Field(
        description="The feature's activation on each token (0 where it does not fire).")
    field: TextField = Field(default="response", description="Prompt or response text.")

    @model_validator(mode="after")
    def _same_length(self) -> CardContext:
        if len(self.tokens) != len(self.activations) or not self.tokens:
            raise ValueError("a context needs one activation per token, and tokens")
        return self

    @property
    def peak(self) -> int:
        """Position of the strongest token in the window."""
        return max(range(len(self.activations)), key=self.activations.__getitem__)

    @property
    def activation(self) -> float:
        """The strongest activation in the window."""
        return max(self.activations)


class TokenCount(BaseModel):
    """A token the feature fires on, and on how many corpus tokens it fired there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    count: int = Field(ge=0)
    share: float = Field(ge=0, le=1, description="Share of the feature's firings on it.")


class CardNeighbour(BaseModel):
    """A feature firing on the same corpus tokens, by normalised PMI in [-1, 1]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: int = Field(ge=0)
    npmi: float = Field(ge=-1, le=1)
    count: int = Field(ge=0, description="Corpus tokens where both fire.")


class FeatureCard(BaseModel):
    """Everything the card corpus says about one feature."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: int = Field(ge=0)
    label: str = Field(max_length=200, description="Short label derived from the contexts.")
    density: float = Field(ge=0, le=1, description="Share of corpus tokens it fires on.")
    fired: int = Field(default=0, ge=0, description="Corpus tokens it fires on.")
    documents: int = Field(default=0, ge=0, description="Corpus texts it fires in.")
    max_activation: float = Field(default=0.0, ge=0)
    top_tokens: tuple[TokenCount, ...] = ()
    contexts: tuple[CardContext, ...] = Field(
        default=(), description="Top-activating contexts, strongest first, one per text.")
    neighbours: tuple[CardNeighbour, ...] = ()


class FeatureCards(BaseModel):
    """A cards file: one card per feature of one SAE."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="FeatureCards")

    sae_id: str | None = Field(default=None, description="Which SAE the cards describe.")
    d_sae: int = Field(gt=0)
    corpus: str = Field(default="", description="What the cards were read from.")
    tokens: int = Field(default=0, ge=0, description="Corpus tokens read.")
    texts: int = Field(default=0, ge=0, description="Corpus texts read.")
    method: str = Field(default="", description="How contexts, labels, neighbours were made.")
    cards: list[FeatureCard]
    _by_index: dict[int, FeatureCard] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._by_index = {c.feature: c for c in self.cards}

    def get(self, feature: int) -> FeatureCard | None:
        """The card of ``feature``, or ``None`` when the file has none."""
        return self._by_index.get(feature)

    def labels(self) -> dict[int, str]:
        """Every card's label by feature."""
        return {c.feature: c.label for c in self.cards if c.label}

    def save(self, path: Path) -> None:
        """Write the cards as gzip-compressed JSON (``.gz``) or plain JSON."""
        raw = self.model_dump_json(exclude_defaults=True).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(raw, 9, mtime=0) if path.suffix == ".gz" else raw)

    @classmethod
    def load(cls, path: Path) -> FeatureCards:
        """Read a cards file written by :meth:`save`.

        Raises
        ------
        CardsError
            Missing, unreadable or not a cards file.
        """
        try:
            raw = Path(path).read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            return cls.model_validate(json.loads(raw))
        except (OSError, EOFError, gzip.BadGzipFile, json.JSONDecodeError) as exc:
            raise CardsError(f"cannot read feature cards {path}: {exc}") from exc
        except ValidationError as exc:
            raise CardsError(f"{path} is not a feature cards file ({exc.error_count()} "
                             "errors): rebuild it with saewatch feature-cards") from exc


__all__ = ["CARDS_FILE", "CardContext", "CardNeighbour", "CardsError", "FeatureCard",
           "FeatureCards", "TokenCount"]
