"""The encoder contract: ``encode(events) -> FeatureBatch``, pure (same texts, same codes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from saewatch.models import FeatureBatch, LLMEvent


class Encoder(ABC):
    """Turns events' prompt and response texts into sparse SAE document codes."""

    encoder_id: str  # names model, layer and SAE; state refuses to mix codes of two encoders
    d_sae: int

    @abstractmethod
    def encode(self, events: Sequence[LLMEvent]) -> FeatureBatch:
        """Encode both text fields of every event; never drops an event."""
