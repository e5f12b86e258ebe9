"""The state contract: ``update`` / ``snapshot`` / ``restore`` / ``merge``.

Hyperparameters are public attributes; learned state is private. A snapshot is a plain dict of
numpy arrays and builtins (picklable, versioned by the snapshot store); ``merge`` adds counts, so
the state of two replicas, or of two halves of a stream, combines exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

from saewatch.models import FeatureBatch


class StateComponent(ABC):
    """One piece of incrementally updated, mergeable state."""

    @abstractmethod
    def update(self, batch: FeatureBatch) -> None:
        """Fold one batch of codes in."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """Return a self-contained copy of the learned state."""

    @abstractmethod
    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the learned state with ``snapshot``."""

    @abstractmethod
    def merge(self, other: Self) -> None:
        """Add ``other``'s state into this one (counts add up)."""
