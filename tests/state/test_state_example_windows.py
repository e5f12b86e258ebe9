"""Peak windows in the example store: kept with their examples, served, snapshotted, merged,
bounded; and carried along when a batch is cut or joined."""

from __future__ import annotations

import pickle

import numpy as np

from saewatch.models import FeatureBatch, TokenWindows
from saewatch.state.examples import ExampleReservoirs
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import make_batch


def _spans(text: str) -> list[tuple[int, int]]:
    """Word tokens with their leading space, like a byte-level tokenizer's offsets."""
    out, start = [], 0
    for i in range(1, len(text) + 1):
        if i == len(text) or text[i] == " ":
            out.append((start, i))
            start = i
    return out


def windowed_batch(rows: list[list[int]], d_sae: int, start: int = 0,
                   values: list[list[float]] | None = None) -> FeatureBatch:
    """Response ``i`` is "w0 w1 ... w7 (event i)"; feature f fires on word f % 8 with the
    pooled value, and at half of it on the next word."""
    texts = [" ".join(f"w{t}" for t in range(8)) + f" (event {start + i})" for i in range(len(rows))]
    vals = values or [[1.0 + 0.25 * f for f in r] for r in rows]
    pairs = [[(f, 0, [v if t == f % 8 else v / 2 if t == f % 8 + 1 else 0.0 for t in range(12)])
              for f, v in zip(r, vs, strict=True)] for r, vs in zip(rows, vals, strict=True)]
    batch = make_batch(rows, d_sae, values=vals, start=start, texts=texts)
    return batch.model_copy(update={"response_windows": TokenWindows.from_docs(
        [_spans(t) for t in texts], pairs)})


def test_examples_carry_their_window_with_the_peak_marked() -> None:
    ex = ExampleReservoirs(d_sae=4, k=2)
    ex.update(windowed_batch([[1, 2], [2]], 4))
    best = ex.examples(2, "m", "v1", "response")[0]
    assert best.window is not None
    w = best.window
    assert w.offset == 0 and w.text.startswith("w0 w1 w2")
    assert best.text[w.offset : w.offset + len(w.text)] == w.text
    marked = [(w.text[h.start : h.end], h.activation) for h in w.highlights]
    assert marked == [(" w2", 1.5), (" w3", 0.75)]


def test_snapshot_pickle_and_frozen_copies_keep_windows() -> None:
    ex = ExampleReservoirs(4, 2)
    ex.update(windowed_batch([[1], [1, 3]], 4))
    want = ex.examples(1, "m", "v1", "response") + ex.examples(3, "m", "v1", "response")
    assert all(s.window is not None for s in want)
    restored = ExampleReservoirs(4, 2)
    restored.restore(ex.snapshot())
    for other in (restored, pickle.loads(pickle.dumps(ex)), ex.frozen()):
        got = other.examples(1, "m", "v1", "response") + other.examples(3, "m", "v1", "response")
        assert got == want


def test_snapshot_on_disk_round_trip_keeps_windows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ex = ExampleReservoirs(4, 2)
    ex.update(windowed_batch([[1], [1, 3]], 4))
    store = SnapshotStore(tmp_path, keep=1)
    store.save({"examples": ex.snapshot()}, {})
    loaded = store.load_latest()
    assert loaded is not None
    back = ExampleReservoirs(4, 2)
    back.restore(loaded.state["examples"])
    assert back.examples(3, "m", "v1", "response") == ex.examples(3, "m", "v1", "response")


def test_an_older_snapshot_without_windows_restores_without_highlights() -> None:
    ex = ExampleReservoirs(4, 2)
    ex.update(windowed_batch([[1], [1, 3]], 4))
    old = ex.snapshot()
    del old["windows"]
    back = ExampleReservoirs(4, 2)
    back.restore(old)
    got = back.examples(1, "m", "v1", "response")
    assert [s.event_id for s in got] == [s.event_id for s in ex.examples(1, "m", "v1", "response")]
    assert all(s.window is None for s in got)


def test_merge_keeps_each_examples_own_window() -> None:
    a, b = ExampleReservoirs(4, 3), ExampleReservoirs(4, 3)
    a.update(windowed_batch([[1], [1]], 4, values=[[1.0], [3.0]]))
    b.update(windowed_batch([[1], [1]], 4, start=2, values=[[2.0], [4.0]]))
    a.merge(b)
    got = a.examples(1, "m", "v1", "response")
    assert [s.event_id for s in got] == ["e3", "e1", "e2"]
    for s in got:
        assert s.window is not None and s.window.highlights[0].activation == s.activation


def test_windows_stay_bounded_and_belong_to_their_event() -> None:
    rng = np.random.default_rng(0)
    ex = ExampleReservoirs(d_sae=8, k=2)
    for start in range(0, 6_000, 200):
        rows = [sorted(rng.choice(8, 3, replace=False).tolist()) for _ in range(200)]
        vals = [rng.uniform(0.1, 10, 3).round(2).tolist() for _ in range(200)]
        ex.update(windowed_batch(rows, 8, start=start, values=vals))
    assert len(ex._windows) <= 2 * 8 * 2 + 4096  # live pairs, plus GC slack
    for f in range(8):
        for s in ex.examples(f, "m", "v1", "response"):
            assert s.window is not None and s.window.highlights[0].activation == s.activation


def test_private_mode_keeps_no_windows() -> None:
    ex = ExampleReservoirs(4, 2, store_snippets=False)
    ex.update(windowed_batch([[1], [1, 3]], 4))
    assert ex._windows == {}
    assert ex.examples(1, "m", "v1", "response")[0].window is None


def test_take_and_concat_keep_windows_aligned_with_events() -> None:
    batch = windowed_batch([[1], [2], [3]], 4)
    cut = batch.take([2, 0])
    assert cut.response_windows is not None
    w = cut.response_windows.window(0, 3, cut.events[0].response)
    assert w is not None and w.text.endswith("(event 2)")
    joined = FeatureBatch.concat([make_batch([[1]], 4, start=9), cut])
    assert joined.response_windows is not None and len(joined.response_windows) == 3
    assert joined.response_windows.window(0, 1, joined.events[0].response) is None
    assert joined.response_windows.window(2, 1, joined.events[2].response) is not None
    assert FeatureBatch.concat([make_batch([[1]], 4)]).response_windows is None
