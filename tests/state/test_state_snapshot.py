"""Snapshot store: atomic files, retention, offsets, format versions, damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from saewatch.state.exceptions import SnapshotFormatError
from saewatch.state.snapshot import FORMAT_VERSION, SnapshotStore


def test_round_trip_of_nested_state_and_offsets(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    state = {"a": np.arange(4, dtype=np.int64), "b": {"c": [np.ones(2), "x"], "d": None},
             "e": -np.inf, "f": ["s1", "s2"]}
    store.save(state, {("events", 0): 10, ("events", 1): 7})
    loaded = store.load_latest()
    assert loaded is not None and loaded.sequence == 1
    assert loaded.offsets == {("events", 0): 10, ("events", 1): 7}
    assert loaded.state["a"].tolist() == [0, 1, 2, 3] and loaded.state["a"].dtype == np.int64
    assert loaded.state["b"]["c"][0].tolist() == [1.0, 1.0] and loaded.state["b"]["c"][1] == "x"
    assert loaded.state["e"] == -np.inf and loaded.state["f"] == ["s1", "s2"]


def test_keeps_the_newest_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    assert store.load_latest() is None
    for i in range(5):
        store.save({"i": i}, {("t", 0): i})
    assert [p.name for p in store.paths()] == ["snapshot-000000000004.npz",
                                              "snapshot-000000000005.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in store.paths()]
    assert store.load_latest().state["i"] == 4  # type: ignore[union-attr]


def test_a_damaged_newest_file_falls_back_to_the_previous(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    store.save({"i": 1}, {("t", 0): 1})
    newest = store.save({"i": 2}, {("t", 0): 2})
    newest.write_bytes(newest.read_bytes()[:50])
    loaded = store.load_latest()
    assert loaded is not None and loaded.state["i"] == 1 and loaded.offsets == {("t", 0): 1}


def test_unknown_format_version_is_a_clear_error(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.save({"i": 1}, {})
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads(arrays["__manifest__"].tobytes())
    manifest["format"] = FORMAT_VERSION + 1
    arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(SnapshotFormatError, match="format"):
        store.load_latest()


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFormatError, match="object array"):
        SnapshotStore(tmp_path).save({"bad": np.array([{}], dtype=object)}, {})
