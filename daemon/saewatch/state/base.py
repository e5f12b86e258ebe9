"""The state contract: ``update`` / ``snapshot`` / ``restore`` / ``merge``, and the record tally.

Hyperparameters are public attributes; learned state is private. A snapshot is a plain dict of
numpy arrays and builtins (picklable, versioned by the snapshot store); ``merge`` adds counts, so
the state of two replicas, or of two halves of a stream, combines exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class RecordTally:
    """What became of the records the state accounts for, since the state began.

    Every record read before the state's offsets is exactly one of: ``processed`` (a valid event
    folded into the counts), ``duplicates`` (a valid event whose id was already counted, dropped)
    or ``invalid`` (rejected by the source and dead-lettered). The tally is persisted in every
    snapshot with those offsets, so after a restart it still adds up to the records before them.

    >>> t = RecordTally(processed=5, duplicates=1) + RecordTally(invalid=2)
    >>> t.records, (t - RecordTally(processed=2)).processed, t.outcomes()["duplicate"]
    (8, 3, 1)
    """

    processed: int = 0
    duplicates: int = 0
    invalid: int = 0

    @property
    def records(self) -> int:
        return self.processed + self.duplicates + self.invalid

    def outcomes(self) -> dict[str, int]:
        """The counts keyed by outcome label (``processed``, ``invalid``, ``duplicate``)."""
        return {"processed": self.processed, "invalid": self.invalid,
                "duplicate": self.duplicates}

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RecordTally:
        """Read :meth:`as_dict` back; missing entries (older snapshots) are 0."""
        return cls(**{k: int(values.get(k, 0)) for k in ("processed", "duplicates", "invalid")})

    def __add__(self, other: RecordTally) -> RecordTally:
        return RecordTally(self.processed + other.processed, self.duplicates + other.duplicates,
                           self.invalid + other.invalid)

    def __sub__(self, other: RecordTally) -> RecordTally:
        return RecordTally(self.processed - other.processed, self.duplicates - other.duplicates,
                           self.invalid - other.invalid)
