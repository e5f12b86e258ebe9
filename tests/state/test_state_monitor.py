"""MonitorState: the composed state's contract (snapshot/restore, pickling, merge, queries)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from saewatch.config import StateSettings, WindowSettings
from saewatch.models import FeatureBatch
from saewatch.state.exceptions import EncoderMismatchError, IncompatibleStateError
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import make_batch

SETTINGS = StateSettings(retrieval_capacity=200, cooccurrence_top_n=16, cluster_count=3,
                         cluster_dims=8, cluster_warmup_events=50, examples_per_feature=3,
                         windows=WindowSettings(bucket_seconds=60, windows={"10m": 600}))


def batches(seed: int = 0, n: int = 6, size: int = 40) -> list[FeatureBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n):
        rows = [sorted(rng.choice(32, 4, replace=False).tolist()) for _ in range(size)]
        vals = [rng.uniform(0.1, 5, 4).round(2).tolist() for _ in range(size)]
        meta = [{"tenant": f"t{i % 2}"} for i in range(size)]
        out.append(make_batch(rows, 32, version=f"v{b % 2}", values=vals, prompt_rows=rows,
                              metadata=meta, start=b * size))
    return out


def fill(state: MonitorState, parts: list[FeatureBatch]) -> MonitorState:
    for batch in parts:
        state.update(batch)
    return state


def assert_same_answers(a: MonitorState, b: MonitorState) -> None:
    assert a.version_counts() == b.version_counts()
    for v in ("v0", "v1"):
        for window in ("all", "10m"):
            x, y = a.counts("m", v, "response", window), b.counts("m", v, "response", window)
            np.testing.assert_array_equal(x.fired, y.fired)
            np.testing.assert_allclose(x.activation_sum, y.activation_sum, rtol=1e-6)
    assert a.feature_detail(3) == b.feature_detail(3)
    assert a.retrieve([1, 2]) == b.retrieve([1, 2])
    assert a.cluster_shares() == b.cluster_shares()
    assert a.npmi_top_pairs(k=5) == b.npmi_top_pairs(k=5)


def test_snapshot_store_round_trip_answers_the_same(tmp_path: Path) -> None:
    state = fill(MonitorState(SETTINGS), batches())
    store = SnapshotStore(tmp_path)
    store.save(state.snapshot(), {("events", 0): 240})
    loaded = store.load_latest()
    assert loaded is not None
    restored = MonitorState(SETTINGS)
    restored.restore(loaded.state)
    assert restored.encoder_id == "test-encoder" and restored.d_sae == 32
    assert_same_answers(state, restored)
    # and it keeps counting exactly where it stopped
    more = batches(seed=9, n=2)
    fill(state, more), fill(restored, more)
    assert_same_answers(state, restored)


def test_pickle_round_trip() -> None:
    state = fill(MonitorState(SETTINGS), batches())
    assert_same_answers(state, pickle.loads(pickle.dumps(state)))


def test_merge_of_two_halves_adds_counts_exactly() -> None:
    parts = batches(n=8)
    whole = fill(MonitorState(SETTINGS), parts)
    left, right = fill(MonitorState(SETTINGS), parts[:4]), fill(MonitorState(SETTINGS), parts[4:])
    left.merge(right)
    assert left.version_counts() == whole.version_counts()
    for v in ("v0", "v1"):
        for field in ("prompt", "response"):
            for window in ("all", "10m"):
                np.testing.assert_array_equal(left.counts("m", v, field, window).fired,
                                              whole.counts("m", v, field, window).fired)
    assert sum(s.documents for s in left.cluster_shares()) == 320
    assert left.examples(5, "m", "v0", "response") == whole.examples(5, "m", "v0", "response")


def test_restore_or_merge_of_another_encoder_is_refused() -> None:
    state = fill(MonitorState(SETTINGS), batches(n=1))
    other = MonitorState(SETTINGS)
    other.update(make_batch([[1]], 32, encoder_id="other-sae"))
    with pytest.raises(EncoderMismatchError):
        state.restore(other.snapshot())
    with pytest.raises(EncoderMismatchError):
        state.merge(other)
    different = MonitorState(SETTINGS.model_copy(update={"cluster_count": 4}))
    different.update(make_batch([[1]], 32))
    with pytest.raises(IncompatibleStateError):
        state.merge(different)


def test_queries_on_an_empty_state_are_empty() -> None:
    state = MonitorState(SETTINGS)
    assert state.version_counts() == [] and state.retrieve([1]) == []
    assert state.cluster_shares() == [] and state.npmi_top_pairs() == []
    assert state.feature_detail(1).frequencies == ()


def test_feature_detail_collects_frequencies_examples_and_neighbours() -> None:
    state = MonitorState(SETTINGS)
    state.update(make_batch([[1, 2]] * 10 + [[3]] * 10, 8, values=[[2.0, 1.0]] * 10 + [[1.0]] * 10,
                            metadata=[{"tenant": "a"}] * 10 + [{"tenant": "b"}] * 10))
    detail = state.feature_detail(1, labels={1: "one", 2: "two"})
    assert detail.label == "one"
    freq = {(f.field, f.window): f.frequency for f in detail.frequencies}
    assert freq[("response", "all")] == 0.5 and freq[("prompt", "all")] == 0.0
    assert len(detail.examples) == 3 and detail.examples[0].activation == 2.0
    neighbours = {(n.kind, n.feature, n.metadata_value): n.npmi for n in detail.neighbours}
    assert neighbours[("feature", 2, None)] == 1.0
    assert neighbours[("metadata", None, "a")] == 1.0
    assert next(n for n in detail.neighbours if n.feature == 2).label == "two"


def snapshot_bytes(state: MonitorState) -> int:
    """Bytes of arrays plus characters of strings in a snapshot (its size on disk, roughly)."""
    def size(v: object) -> int:
        if isinstance(v, np.ndarray):
            return v.nbytes
        if isinstance(v, dict):
            return sum(size(x) for x in v.values()) + sum(len(str(k)) for k in v)
        if isinstance(v, list | tuple):
            return sum(size(x) for x in v)
        return len(v) if isinstance(v, str) else 8
    return size(state.snapshot())


def test_memory_stops_growing_once_the_retrieval_ring_is_full() -> None:
    # Both rings (retrieval, event ids for dedup) fill within the first round.
    settings = SETTINGS.model_copy(update={"retrieval_capacity": 200, "dedup_capacity": 1_000})
    state = MonitorState(settings)
    sizes = []
    for round_ in range(3):
        for b in batches(seed=round_, n=25):  # 1,000 events per round
            state.update(b.model_copy(update={"events": tuple(
                e.model_copy(update={"event_id": f"r{round_}-{e.event_id}"}) for e in b.events)}))
        sizes.append(snapshot_bytes(state))
    assert state.counts("m", "v0", "response").n_documents == 3 * 13 * 40
    assert sizes[2] <= sizes[1] * 1.05  # flat: 1,000 more events add (almost) nothing


def test_a_replayed_event_is_counted_once() -> None:
    state = MonitorState(SETTINGS)
    batch = next(iter(batches(seed=0, n=1)))
    state.update(batch)
    state.update(batch.take(list(range(len(batch) - 1, -1, -2))))  # a replay, reordered
    assert state.counts("m", "v0", "response").n_documents == sum(
        e.model_version == "v0" for e in batch.events)
    restored = MonitorState(SETTINGS)
    restored.restore(state.snapshot())
    restored.update(batch)  # a replay after a restart from the snapshot
    assert restored.version_counts() == state.version_counts()


def test_an_empty_state_reports_unknown_keys_not_a_crash() -> None:
    from saewatch.state.exceptions import UnknownKeyError

    with pytest.raises(UnknownKeyError, match="no documents yet"):
        MonitorState(SETTINGS).counts("m", "v1", "response")
