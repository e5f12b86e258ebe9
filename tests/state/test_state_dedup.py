"""Replays dropped by event id are tallied and counted: every record is processed, duplicate or
invalid, in the state's persisted tally and in /metrics, also across a restart."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from saewatch.app import App
from saewatch.config import Settings, StateSettings, load_settings
from saewatch.export.metrics import PipelineMetrics
from saewatch.models import InvalidRecord, Record, SourceBatch, SourcePosition, TopicPartition
from saewatch.runtime import fold
from saewatch.source.base import ResumeOffset, Source
from saewatch.state.base import RecordTally
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import make_batch

SETTINGS = StateSettings(retrieval_capacity=100)
TOPIC = "llm-features"


def test_update_tallies_the_events_it_drops_as_already_counted() -> None:
    state = MonitorState(SETTINGS)
    state.update(make_batch([[1], [2], [3]], 8))  # e0 e1 e2
    assert state.tally == RecordTally(processed=3)
    state.update(make_batch([[1], [2], [3]], 8, start=2))  # e2 again, e3, e4
    assert state.tally == RecordTally(processed=5, duplicates=1)
    state.update(make_batch([[1]], 8, start=4))  # only e4 again: nothing new is folded
    assert state.tally == RecordTally(processed=5, duplicates=2)
    assert [v.documents for v in state.version_counts()] == [5, 5]


def test_tally_survives_snapshot_store_restore_and_merge(tmp_path: Path) -> None:
    state = MonitorState(SETTINGS)
    state.update(make_batch([[1], [1]], 8))
    state.update(make_batch([[1]], 8, start=1))
    state.count_invalid(2)
    store = SnapshotStore(tmp_path)
    store.save(state.snapshot(), {(TOPIC, 0): 5})
    loaded = store.load_latest()
    assert loaded is not None
    restored = MonitorState(SETTINGS)
    restored.restore(loaded.state)
    assert restored.tally == RecordTally(processed=2, duplicates=1, invalid=2)
    restored.merge(state)
    assert restored.tally == RecordTally(processed=4, duplicates=2, invalid=4)


def test_a_state_of_invalid_records_only_keeps_its_tally_and_old_snapshots_read_as_zero() -> None:
    only_invalid = MonitorState(SETTINGS)
    only_invalid.count_invalid(3)
    restored = MonitorState(SETTINGS)
    restored.restore(only_invalid.snapshot())
    assert restored.tally == RecordTally(invalid=3) and restored.d_sae is None
    counted = MonitorState(SETTINGS)
    counted.update(make_batch([[1]], 8))
    before_tallies = {k: v for k, v in counted.snapshot().items() if k != "tally"}
    restored.restore(before_tallies)
    assert restored.tally == RecordTally() and restored.d_sae == 8
    with pytest.raises(ValueError):
        restored.count_invalid(-1)


def test_fold_counts_processed_duplicates_and_the_tally_in_the_registry() -> None:
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    state = MonitorState(SETTINGS)
    fold(state, make_batch([[1], [2]], 8), 1, metrics)
    fold(state, make_batch([[1], [2], [3]], 8, start=1), 0, metrics)  # e1 again
    fold(state, None, 2, metrics)  # a batch of invalid records only
    get = registry.get_sample_value
    assert get("saewatch_events_processed_total") == 4
    assert get("saewatch_events_duplicate_total") == 1
    assert _state_records(registry) == {"processed": 4, "invalid": 3, "duplicate": 1}


# --- the aggregator's loop, through a source of fixed batches -----------------------------------


class BatchesSource(Source):
    """Hands out ``batches``, one per poll, then empty ones; reads one partition."""

    def __init__(self, batches: list[SourceBatch]) -> None:
        self._batches = list(batches)

    def poll_batch(self, max_records: int, timeout_s: float) -> SourceBatch:
        return self._batches.pop(0) if self._batches else SourceBatch()

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        pass  # the snapshot holds the offsets; nothing else to tell

    def close(self) -> None:
        pass

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset({(TOPIC, 0)})


def _features(offset: int, event: int) -> Record:
    """A decoded features message at ``offset`` carrying event ``e<event>``."""
    codes = make_batch([[event % 8]], 8, start=event)
    return Record(event=codes.events[0], position=_at(offset), codes=codes)


def _undecodable(offset: int) -> InvalidRecord:
    return InvalidRecord(position=_at(offset), reason="schema", error="not a features message",
                         raw=b"{}")


def _at(offset: int) -> SourcePosition:
    return SourcePosition(topic=TOPIC, partition=0, offset=offset)


def _aggregator(settings: Settings, batches: list[SourceBatch]) -> tuple[App, CollectorRegistry]:
    def source(resume: ResumeOffset, stop: threading.Event) -> Source:
        return BatchesSource(batches)

    registry = CollectorRegistry()
    app = App(settings, source_factory=source, registry=registry, serve_http=False,
              role="aggregate", max_events=sum(len(b) for b in batches))
    assert app.run() == 0
    return app, registry


def _state_records(registry: CollectorRegistry) -> dict[str, float | None]:
    return {o: registry.get_sample_value("saewatch_state_records", {"outcome": o})
            for o in ("processed", "invalid", "duplicate")}


def test_the_aggregator_accounts_for_every_record_across_a_restart(tmp_path: Path) -> None:
    settings = load_settings(None, state={"snapshot_dir": tmp_path / "snap"})
    first = [SourceBatch(records=(_features(0, 0), _features(1, 1)), invalid=(_undecodable(2),)),
             SourceBatch(records=(_features(3, 1), _features(4, 2)))]  # e1 replayed
    _, registry = _aggregator(settings, first)
    get = registry.get_sample_value
    assert get("saewatch_events_consumed_total") == 5
    assert (get("saewatch_events_processed_total"), get("saewatch_events_duplicate_total")) == (3, 1)
    assert get("saewatch_events_invalid_total", {"reason": "schema"}) == 1
    assert get("saewatch_processing_errors_total", {"stage": "source"}) == 1
    assert _state_records(registry) == {"processed": 3, "invalid": 1, "duplicate": 1}

    # A new process: its counters start at 0, the tally resumes from the snapshot.
    second = [SourceBatch(records=(_features(5, 2), _features(6, 3)), invalid=(_undecodable(7),))]
    app, registry = _aggregator(settings, second)
    counters = {name: registry.get_sample_value(f"saewatch_events_{name}_total", labels) or 0.0
                for name, labels in [("consumed", {}), ("processed", {}), ("duplicate", {}),
                                     ("invalid", {"reason": "schema"})]}
    assert counters == {"consumed": 3, "processed": 1, "duplicate": 1, "invalid": 1}
    records = _state_records(registry)
    assert records == {"processed": 4, "invalid": 2, "duplicate": 2}
    assert sum(v or 0 for v in records.values()) == 8  # every offset 0..7
    assert app.state is not None and app.state.tally.records == 8
