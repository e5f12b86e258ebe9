"""Replay a JSONL file of events: one JSON event per line, validated like Kafka messages.

Positions are ``(path, 0, line number)`` with 0-based line numbers, so a record's position reads
``events.jsonl[0]@12`` in logs. There is no broker to acknowledge anything: :meth:`FileSource.commit`
only records progress (readable as :attr:`FileSource.committed`) and invalid lines are reported
in the batch and counted, not dead-lettered. Blank lines are skipped.

>>> import tempfile, pathlib
>>> from saewatch.config import Settings
>>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
>>> _ = path.write_text(
...     '{"event_id": "a", "timestamp": "2026-01-01T00:00:00Z", "model_id": "m",'
...     ' "model_version": "v1", "prompt": "p", "response": "r"}\\n'
...     'not json\\n')
>>> with FileSource(Settings(), path=path) as src:
...     batch = src.poll_batch(10, 0.1)
...     [r.event.event_id for r in batch.records], [b.reason for b in batch.invalid], src.exhausted
(['a'], ['invalid_json'], True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, TextIO

from pydantic import ValidationError
from typing_extensions import override

from saewatch.config import Settings
from saewatch.models import (
    InvalidRecord,
    LLMEvent,
    Record,
    SourceBatch,
    SourcePosition,
    TopicPartition,
)
from saewatch.source.base import ResumeOffset, Source
from saewatch.source.exceptions import OffsetRegressionError, ReplayFileError, SourceClosedError
from saewatch.source.stats import SourceStats
from saewatch.source.validate import describe_errors, validate

logger = logging.getLogger(__name__)


class FileSource(Source):
    """Events from a JSONL file, in file order.

    Parameters
    ----------
    settings
        ``source.path`` (unless ``path`` is given), ``source.max_chars`` and
        ``kafka.max_message_bytes`` (the longest line accepted) are used.
    resume
        Called once with ``(str(path), 0)``: the line to start at, or ``None`` for the first.
    path
        The file to read instead of ``settings.source.path``.

    Attributes
    ----------
    stats : SourceStats
        Counters, as for the Kafka source.
    exhausted : bool
        True once the end of the file has been reached.
    """

    def __init__(
        self, settings: Settings, resume: ResumeOffset | None = None, *, path: Path | None = None
    ) -> None:
        chosen = path or settings.source.path
        if chosen is None:
            raise ReplayFileError("no replay file: set source.path or pass path=")
        self.path = Path(chosen)
        self.settings = settings
        self.stats = SourceStats()
        self._exhausted = False
        self._topic = str(self.path)
        self._line = 0
        self._committed: int | None = None
        try:
            self._fh: BinaryIO | None = self.path.open("rb")
        except OSError as exc:
            raise ReplayFileError(f"cannot read replay file {self.path}: {exc}") from exc
        start = resume(self._topic, 0) if resume is not None else None
        if start:
            self._skip(start)

    @property
    def committed(self) -> int | None:
        """The next line to read after the last commit (``None`` before any commit)."""
        return self._committed

    def poll_batch(self, max_records: int, timeout_s: float) -> SourceBatch:
        """Read up to ``max_records`` non-blank lines; never waits (``timeout_s`` is unused)."""
        if self._fh is None:
            raise SourceClosedError(f"the replay of {self.path} is closed; create a new source")
        records: list[Record] = []
        invalid: list[InvalidRecord] = []
        while len(records) + len(invalid) < max_records:
            line = self._fh.readline()
            if not line:
                if not self._exhausted:
                    logger.info(
                        "end of %s after %d lines: %s", self.path, self._line, self.stats.summary()
                    )
                self._exhausted = True
                break
            position = SourcePosition(topic=self._topic, partition=0, offset=self._line)
            self._line += 1
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            result = validate(
                raw,
                position,
                max_chars=self.settings.source.max_chars,
                max_bytes=self.settings.kafka.max_message_bytes,
            )
            if isinstance(result, Record):
                self.stats.count_valid(result.truncated_fields)
                records.append(result)
            else:
                self.stats.count_invalid(result.reason)
                invalid.append(result)
        return SourceBatch(records=tuple(records), invalid=tuple(invalid))

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record progress: ``offsets[(str(path), 0)]`` is the next line to read."""
        offset = offsets.get((self._topic, 0))
        if offset is None:
            return
        if self._committed is not None and offset < self._committed:
            raise OffsetRegressionError(
                f"commit of {self._topic}[0]@{offset} is below the committed {self._committed}"
            )
        self._committed = offset
        self.stats.commits += 1
        logger.debug("progress %s[0]@%d", self._topic, offset)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def assignment(self) -> frozenset[TopicPartition]:
        """The one pseudo-partition ``(str(path), 0)``."""
        return frozenset({(self._topic, 0)})

    @property
    @override
    def exhausted(self) -> bool:
        return self._exhausted

    @override
    def lag(self) -> dict[TopicPartition, int]:
        """0 once the file is exhausted; unknown (left out) before, to avoid counting lines."""
        return {(self._topic, 0): 0} if self.exhausted else {}

    def _skip(self, lines: int) -> None:
        assert self._fh is not None
        while self._line < lines and self._fh.readline():
            self._line += 1
        logger.info("resuming %s at line %d", self.path, self._line)


InvalidLine = Callable[[int, str], None]


def read_events(path: Path, on_invalid: InvalidLine | None = None) -> Iterator[LLMEvent]:
    """Parse a JSONL file of events; blank lines are skipped.

    The one reader of event files outside the daemon's replay: strict by default (publishing
    must not drop an event silently); with ``on_invalid`` each invalid line is reported as
    ``(line number, reason)`` and skipped (``encode-file`` counts them).

    Raises
    ------
    ReplayFileError
        If the file cannot be read, or, when strict, a line is not a valid event (its number
        is given).
    """
    try:
        with Path(path).open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield LLMEvent.model_validate_json(line)
                except ValidationError as exc:
                    reason = describe_errors(exc)
                    if on_invalid is None:
                        raise ReplayFileError(
                            f"{path}:{number}: not a valid event: {reason}") from exc
                    on_invalid(number, reason)
    except OSError as exc:
        raise ReplayFileError(f"cannot read {path}: {exc}") from exc


def write_events(events: Iterable[LLMEvent], out: TextIO) -> int:
    """Write ``events`` as JSONL (one compact JSON object per line); returns how many."""
    n = 0
    for event in events:
        out.write(event.model_dump_json() + "\n")
        n += 1
    return n
