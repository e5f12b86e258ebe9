"""Event-time windows: bucket sizing, expiry, late events, merge and snapshots."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np

from saewatch.config import WindowSettings
from saewatch.state.testing import T0, make_batch
from saewatch.state.windows import WindowedCounter

SETTINGS = WindowSettings(bucket_seconds=60, windows={"5m": 300, "1h": 3600},
                          max_buckets_per_window=12)


def at(minutes: float) -> list:
    return [T0 + timedelta(minutes=minutes)]


def test_bucket_sizes_follow_the_settings() -> None:
    w = WindowedCounter(4, SETTINGS)
    assert (w.bucket_seconds("5m"), w.n_buckets("5m")) == (60, 5)
    assert (w.bucket_seconds("1h"), w.n_buckets("1h")) == (300, 12)


def test_old_buckets_expire_as_event_time_advances() -> None:
    w = WindowedCounter(4, SETTINGS)
    w.update(make_batch([[0]], 4, times=at(0)))
    w.update(make_batch([[1]], 4, times=at(3), start=1))
    assert w.counts("m", "v1", "response", "5m").fired.tolist() == [1, 1, 0, 0]
    w.update(make_batch([[2]], 4, times=at(6), start=2))  # minute-0 bucket leaves the 5m window
    assert w.counts("m", "v1", "response", "5m").fired.tolist() == [0, 1, 1, 0]
    assert w.counts("m", "v1", "response", "1h").n_documents == 3
    w.update(make_batch([[3]], 4, times=at(120), start=3))
    assert w.counts("m", "v1", "response", "1h").fired.tolist() == [0, 0, 0, 1]
    assert w.keys("5m") == [("m", "v1", "prompt"), ("m", "v1", "response")]


def test_late_events_only_count_where_they_still_fit() -> None:
    w = WindowedCounter(4, SETTINGS)
    w.update(make_batch([[0]], 4, times=at(100)))
    w.update(make_batch([[1]], 4, times=at(50), start=1))  # too old for 5m, fits in 1h
    w.update(make_batch([[2]], 4, times=at(1), start=2))  # too old for both
    assert w.counts("m", "v1", "response", "5m").fired.tolist() == [1, 0, 0, 0]
    assert w.counts("m", "v1", "response", "1h").fired.tolist() == [1, 1, 0, 0]
    assert w.late_documents == 1


def test_memory_is_bounded_by_the_bucket_count() -> None:
    w = WindowedCounter(4, SETTINGS)
    for minute in range(0, 600, 2):
        w.update(make_batch([[minute % 4]], 4, times=at(minute), start=minute))
    live = {name: len(buckets) for name, buckets in w._buckets.items()}
    assert live["5m"] <= 2 * 5 and live["1h"] <= 2 * 12  # two fields per bucket


def test_merge_adds_buckets_and_equals_one_stream() -> None:
    times = [T0 + timedelta(seconds=37 * i) for i in range(40)]
    rows = [[i % 3] for i in range(40)]
    whole, a, b = (WindowedCounter(3, SETTINGS) for _ in range(3))
    whole.update(make_batch(rows, 3, times=times))
    a.update(make_batch(rows[::2], 3, times=times[::2]))
    b.update(make_batch(rows[1::2], 3, times=times[1::2]))
    a.merge(b)
    for window in ("5m", "1h"):
        x, y = (s.counts("m", "v1", "response", window) for s in (whole, a))
        assert x.n_documents == y.n_documents
        np.testing.assert_array_equal(x.fired, y.fired)


def test_snapshot_and_pickle_round_trip() -> None:
    w = WindowedCounter(3, SETTINGS)
    w.update(make_batch([[0], [1]], 3, times=at(0) + at(1)))
    r = WindowedCounter(3, SETTINGS)
    r.restore(w.snapshot())
    for other in (r, pickle.loads(pickle.dumps(w))):
        assert other.counts("m", "v1", "response", "5m").fired.tolist() == [1, 1, 0]
        assert other.watermark == w.watermark
