"""The source contract: ``poll_batch`` / ``commit`` / ``close``.

A source hands out validated :class:`~saewatch.models.Record` values and reports invalid ones
(already routed to the dead-letter topic by the source itself, before any offset moves past them).
Offsets passed to :meth:`Source.commit` are *next* offsets to read, per ``(topic, partition)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import TracebackType

from saewatch.models import SourceBatch, TopicPartition

# Called on partition assignment: the offset to resume from (e.g. from the latest state
# snapshot, which is the source of truth), or None to use the committed group offset.
ResumeOffset = Callable[[str, int], int | None]


class Source(ABC):
    """A stream of LLM events with at-least-once delivery."""

    @abstractmethod
    def poll_batch(self, max_records: int, timeout_s: float) -> SourceBatch:
        """Return up to ``max_records`` records (valid and invalid) in offset order."""

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Durably record that everything before ``offsets`` has been fully handled."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; safe to call twice."""

    def flush(self) -> None:  # noqa: B027 (optional hook: sources without a dead-letter topic)
        """Block until every dead letter handed out so far is acknowledged (checkpoint step 1)."""

    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions this source currently reads."""
        return frozenset()

    def lag(self) -> dict[TopicPartition, int]:
        """Records not yet read per partition, where the source knows it (else left out)."""
        return {}

    @property
    def exhausted(self) -> bool:
        """Whether a finite source (a file) has been read to its end; never for a stream."""
        return False

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
