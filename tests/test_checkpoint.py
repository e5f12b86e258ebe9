"""Offsets: strictly increasing, re-deliveries after a rebalance dropped, checkpoint order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from saewatch.checkpoint import Checkpointer, OffsetTracker
from saewatch.datasets import alpaca_events
from saewatch.errors import OffsetRegressionError
from saewatch.models import InvalidRecord, Record, SourceBatch, SourcePosition


def _batch(offsets: list[int], invalid: list[int] = ()) -> SourceBatch:
    events = alpaca_events("gpt4_1106_preview", limit=len(offsets))
    return SourceBatch(
        records=tuple(Record(event=e, position=SourcePosition(topic="t", partition=0, offset=o))
                      for e, o in zip(events, offsets, strict=True)),
        invalid=tuple(InvalidRecord(position=SourcePosition(topic="t", partition=0, offset=o),
                                    reason="schema", error="x", raw=b"{}") for o in invalid),
    )


def test_offsets_only_move_forward() -> None:
    tracker = OffsetTracker({("t", 0): 5})
    tracker.advance_batch(_batch([5, 7], invalid=[6]))
    assert tracker.offsets() == {("t", 0): 8} and tracker.next("t", 0) == 8
    with pytest.raises(OffsetRegressionError, match=r"t\[0\]: next offset 4 is behind 8"):
        tracker.advance(("t", 0), 4)


def test_records_re_delivered_after_a_rebalance_are_dropped() -> None:
    tracker = OffsetTracker({("t", 0): 10})
    fresh = tracker.fresh(_batch([8, 9, 10, 11], invalid=[9, 12]))
    assert [r.position.offset for r in fresh.records] == [10, 11]
    assert [r.position.offset for r in fresh.invalid] == [12]
    assert tracker.next("t", 1) is None


class _Recorder:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def snapshot(self) -> dict[str, Any]:
        self.log.append("snapshot")
        return {}

    def save(self, state: dict[str, Any], offsets: dict[tuple[str, int], int]) -> Path:
        self.log.append(f"save {offsets}")
        return Path("snap")

    def flush(self) -> None:
        self.log.append("flush dead letters")

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.log.append(f"commit {offsets}")


def test_checkpoint_flushes_then_saves_then_commits_and_skips_when_idle() -> None:
    log: list[str] = []
    rec = _Recorder(log)
    tracker = OffsetTracker()
    checkpointer = Checkpointer(rec, rec, rec, tracker, interval_s=0.0)
    tracker.advance(("t", 0), 3)
    checkpointer.maybe_checkpoint()
    checkpointer.maybe_checkpoint()  # nothing moved: no second write
    assert log == ["flush dead letters", "snapshot", "save {('t', 0): 3}", "commit {('t', 0): 3}"]
    checkpointer.checkpoint()  # forced (shutdown) always writes
    assert checkpointer.written == 2
