"""Which feature cards go with the configured SAE (the card model and file format:
:mod:`saewatch.models.cards`; building them: ``saewatch feature-cards``).

``encode.cards_path`` names a cards file; without it ``feature_cards.json.gz`` beside the SAE
(the shipped default's, or one ``saewatch feature-cards`` wrote beside ``encode.sae.path``) is
used, and only when it describes that SAE. Loading imports no
model library, so an aggregator serves cards without loading a model.

>>> default_cards_path().name
'feature_cards.json.gz'
"""

from __future__ import annotations

import logging
from pathlib import Path

from saewatch.config import EncodeSettings
from saewatch.encode.default import default_sae_dir, sae_folder, same_sae
from saewatch.models.cards import CARDS_FILE, CardsError, FeatureCards

logger = logging.getLogger(__name__)


def default_cards_path() -> Path:
    """The feature cards shipped beside the default SAE."""
    return default_sae_dir() / CARDS_FILE


def cards_for_settings(
    settings: EncodeSettings, d_sae: int | None = None, encoder_id: str | None = None
) -> FeatureCards | None:
    """The configured cards (strict), else ``feature_cards.json.gz`` beside the SAE (the
    shipped default's folder, or ``encode.sae.path``) when there is one.

    With ``encoder_id``, cards found beside the SAE are used only if their ``sae_id`` names
    that encoder's SAE (a retrained SAE must not show another SAE's cards).

    Raises
    ------
    CardsError
        A configured cards file that cannot be read or does not fit ``d_sae``.
    """
    if settings.cards_path is not None:
        cards = FeatureCards.load(settings.cards_path)
        if d_sae is not None and cards.d_sae != d_sae:
            raise CardsError(f"{settings.cards_path} describes an SAE of {cards.d_sae} "
                             f"features, the configured one has {d_sae}: rebuild the cards")
        return cards
    folder = sae_folder(settings)
    if folder is None or not (folder / CARDS_FILE).is_file():
        logger.info("no feature cards (encode.cards_path): feature pages show live data only")
        return None
    cards = FeatureCards.load(folder / CARDS_FILE)
    if encoder_id is not None and not same_sae(cards.sae_id, encoder_id):
        logger.warning("the cards beside the SAE describe %s, not %s: no cards", cards.sae_id,
                       encoder_id)
        return None
    return cards


__all__ = ["cards_for_settings", "default_cards_path"]
