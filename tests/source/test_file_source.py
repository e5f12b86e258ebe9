"""FileSource and the JSONL helpers: positions, resume, progress, invalid lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from saewatch.config import Settings
from saewatch.datasets import alpaca_events
from saewatch.models import LLMEvent
from saewatch.source.exceptions import OffsetRegressionError, ReplayFileError, SourceClosedError
from saewatch.source.file import FileSource, read_events, write_events


@pytest.fixture
def events() -> list[LLMEvent]:
    return alpaca_events("claude-2.1_concise", limit=12)


@pytest.fixture
def jsonl(tmp_path: Path, events: list[LLMEvent]) -> Path:
    path = tmp_path / "events.jsonl"
    with path.open("w", encoding="utf-8") as out:
        write_events(events[:5], out)
        out.write("\n")  # a blank line: skipped, but it still has a line number (5)
        out.write('{"event_id": "broken"\n')  # line 6
        write_events(events[5:], out)  # lines 7..13
    with path.open("ab") as out:
        out.write(b"\xff\xfe not utf-8\n")  # line 14
    return path


def test_reads_everything_with_line_positions(jsonl: Path, events: list[LLMEvent]) -> None:
    with FileSource(Settings(), path=jsonl) as source:
        first = source.poll_batch(4, 0)
        rest = source.poll_batch(100, 0)
        assert source.exhausted
        assert len(source.poll_batch(10, 0)) == 0
        stats = source.stats
    got = [r.event for r in (*first.records, *rest.records)]
    assert got == events
    assert [r.position.offset for r in first.records] == [0, 1, 2, 3]
    assert [r.position.offset for r in rest.records] == [4, 7, 8, 9, 10, 11, 12, 13]
    assert str(first.records[0].position) == f"{jsonl}[0]@0"
    assert [(b.position.offset, b.reason) for b in rest.invalid] == [
        (6, "invalid_json"),
        (14, "encoding"),
    ]
    assert (stats.consumed, stats.valid, stats.invalid_total) == (14, 12, 2)


def test_resume_and_commit_progress(jsonl: Path, events: list[LLMEvent]) -> None:
    asked = []

    def resume(topic: str, partition: int) -> int | None:
        asked.append((topic, partition))
        return 8

    with FileSource(Settings(), resume, path=jsonl) as source:
        batch = source.poll_batch(100, 0)
        assert source.committed is None
        source.commit({(str(jsonl), 0): 15, ("elsewhere", 0): 3})
        assert source.committed == 15
        with pytest.raises(OffsetRegressionError):
            source.commit({(str(jsonl), 0): 9})
        assert source.assignment() == frozenset({(str(jsonl), 0)})
        assert source.lag() == {(str(jsonl), 0): 0}
    assert asked == [(str(jsonl), 0)]
    assert [r.event.event_id for r in batch.records] == [e.event_id for e in events[6:]]
    with pytest.raises(SourceClosedError):
        source.poll_batch(1, 0)


def test_truncation_and_size_limits_apply(tmp_path: Path, events: list[LLMEvent]) -> None:
    path = tmp_path / "e.jsonl"
    long = events[0].model_copy(update={"response": "y" * 3000})
    huge = events[1].model_copy(update={"response": "z" * 5000})
    path.write_text(long.model_dump_json() + "\n" + huge.model_dump_json() + "\n")
    settings = Settings(source={"max_chars": 100}, kafka={"max_message_bytes": 4096})
    with FileSource(settings, path=path) as source:
        batch = source.poll_batch(10, 0)
    assert [r.truncated_fields for r in batch.records] == [("response",)]
    assert batch.records[0].event.response == "y" * 100
    assert [b.reason for b in batch.invalid] == ["oversize"]
    assert source.stats.truncated == 1


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayFileError, match="cannot read replay file .*nope.jsonl"):
        FileSource(Settings(), path=tmp_path / "nope.jsonl")
    with pytest.raises(ReplayFileError, match="no replay file"):
        FileSource(Settings())


def test_read_events_round_trip_and_errors(tmp_path: Path, events: list[LLMEvent]) -> None:
    buf = io.StringIO()
    assert write_events(events, buf) == len(events)
    path = tmp_path / "ok.jsonl"
    path.write_text(buf.getvalue())
    assert list(read_events(path)) == events
    bad = tmp_path / "bad.jsonl"
    bad.write_text(buf.getvalue().splitlines()[0] + "\n" + json.dumps({"event_id": "x"}) + "\n")
    with pytest.raises(
        ReplayFileError, match=r"bad.jsonl:2: not a valid event: timestamp: Field required"
    ):
        list(read_events(bad))
    with pytest.raises(ReplayFileError, match="cannot read"):
        list(read_events(tmp_path / "missing.jsonl"))
