"""What a source hands out: a :class:`Record` (a validated event, where it came from, and for the
aggregator its codes), an :class:`InvalidRecord`, a :class:`SourceBatch` of both."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
)

from saewatch.models.codes import FeatureBatch
from saewatch.models.events import (
    LLMEvent,
    SourcePosition,
    TextField,
)


class Record(BaseModel):
    """A valid event and where it came from; ``truncated_fields`` lists fields cut to the limit.

    ``codes`` is set when the record was read from the features topic (``saewatch aggregate``):
    the event arrives already encoded, as a one-event :class:`FeatureBatch`.
    """

    model_config = ConfigDict(frozen=True)

    event: LLMEvent
    position: SourcePosition
    truncated_fields: tuple[TextField, ...] = ()
    codes: FeatureBatch | None = None


# "encoder": a features message of another encoder than the one an aggregator counts.
InvalidReason = Literal["invalid_json", "schema", "encoding", "oversize", "encoder"]


class InvalidRecord(BaseModel):
    """A record that failed validation; it goes to the dead-letter topic unchanged."""

    model_config = ConfigDict(frozen=True)

    position: SourcePosition
    reason: InvalidReason
    error: str
    raw: bytes
    key: bytes | None = None


class SourceBatch(BaseModel):
    """What one ``poll_batch`` returns: valid records and invalid ones, in offset order."""

    model_config = ConfigDict(frozen=True)

    records: tuple[Record, ...] = ()
    invalid: tuple[InvalidRecord, ...] = ()

    def __len__(self) -> int:
        return len(self.records) + len(self.invalid)


__all__ = ["Record", "InvalidReason", "InvalidRecord", "SourceBatch"]
