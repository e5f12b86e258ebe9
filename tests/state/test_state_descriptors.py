"""Text descriptors in the state: extraction on real texts, histograms, windows, merge, snapshots."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from saewatch.config import StateSettings, WindowSettings
from saewatch.datasets import read_alpaca
from saewatch.models import DESCRIPTOR_NAMES, FeatureBatch, SparseCodes
from saewatch.state.descriptor_counts import DescriptorCounter
from saewatch.state.descriptors import extract_descriptors
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import T0, make_batch

COL = {n: i for i, n in enumerate(DESCRIPTOR_NAMES)}


def outputs(model: str) -> dict[int, str]:
    return {r.index: r.output for r in read_alpaca(model)}


def test_known_responses_with_a_code_block_and_a_table() -> None:
    texts = outputs("claude-2.1")
    code, table = extract_descriptors([texts[147], texts[504]])
    assert code[COL["code_blocks"]] == 1 and code[COL["tables"]] == 0
    assert (code[COL["words"]], code[COL["characters"]], code[COL["lines"]]) == (134, 954, 23)
    assert table[COL["tables"]] == 1 and table[COL["code_blocks"]] == 0
    assert (table[COL["words"]], table[COL["lines"]]) == (176, 9)
    assert table[COL["uppercase_share"]] == pytest.approx(0.064, abs=5e-4)


def test_batch_extraction_agrees_with_plain_python_on_every_real_response() -> None:
    texts = list(outputs("claude-2.1").values()) + list(outputs("Yi-34B-Chat").values())
    values = extract_descriptors(texts, np.arange(len(texts)))
    for text, row in zip(texts, values, strict=True):
        letters = [c for c in text if c.isalpha()]
        assert row[COL["characters"]] == len(text)
        assert row[COL["lines"]] == (text.count("\n") + 1 if text else 0)
        assert row[COL["question_marks"]] == text.count("?") + text.count("\uff1f")
        if text.isascii():
            assert row[COL["words"]] == len(text.split())
        share = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
        assert row[COL["uppercase_share"]] == pytest.approx(share)
        high = sum(ord(c) > 127 for c in letters) / len(letters) if letters else 0.0
        assert row[COL["non_ascii_share"]] == pytest.approx(high)
        if "```" not in text and "~~~" not in text:
            assert row[COL["code_blocks"]] == 0
    assert values[:, COL["tokens"]].tolist() == list(range(len(texts)))
    assert (values[:, COL["non_ascii_share"]] > 0).any()  # the data holds non-English answers


def test_structure_patterns_on_hand_made_markdown() -> None:
    text = ("## Steps\n- one\n* two\n  3) three\n**bold** is no item\n---\n"
            "Name | Size\n--- | ---\na | 1\n~~~\ncode\n")
    row = extract_descriptors([text])[0]
    assert (row[COL["headers"]], row[COL["list_items"]], row[COL["tables"]],
            row[COL["code_blocks"]]) == (1, 3, 1, 1)


def batch_of(texts: list[str], version: str = "v1", start: int = 0,
             seconds: float = 1.0) -> FeatureBatch:
    return make_batch([[0]] * len(texts), d_sae=4, version=version, start=start, texts=texts,
                      times=[T0 + timedelta(seconds=seconds * (start + i))
                             for i in range(len(texts))])


def test_merge_of_two_halves_equals_one_state_exactly() -> None:
    texts = list(outputs("claude-2.1").values())[:300]
    windows = WindowSettings(windows={"1h": 3600})
    whole, first, second = (DescriptorCounter(windows) for _ in range(3))
    for i in range(0, 300, 50):
        whole.update(batch_of(texts[i:i + 50], start=i))
        (first if i < 150 else second).update(batch_of(texts[i:i + 50], start=i))
    first.merge(second)
    for window in ("all", "1h"):
        a, b = whole.stats("m", "v1", "response", window), first.stats("m", "v1", "response", window)
        assert a.n_documents == b.n_documents == 300
        assert np.array_equal(a.hist, b.hist) and np.allclose(a.sums, b.sums)


def test_windows_drop_old_documents_like_the_feature_windows() -> None:
    state = MonitorState(StateSettings(retrieval_capacity=100,
                                       windows=WindowSettings(windows={"1h": 3600})))
    texts = list(outputs("claude-2.1").values())[:40]
    state.update(batch_of(texts[:20], seconds=1.0))
    state.update(batch_of(texts[20:], start=20, seconds=600.0))  # 3 h 20 min later at the end
    view = state.view()
    recent = view.descriptors("m", "v1", "response", "1h")
    assert recent is not None
    assert recent.n_documents == view.counts("m", "v1", "response", "1h").n_documents < 40
    total = view.descriptors("m", "v1", "response")
    assert total is not None and total.n_documents == 40
    with pytest.raises(ValueError):
        total.hist[0, 0] = 1  # the view's arrays are read-only


def test_snapshot_round_trip_through_the_store(tmp_path: Path) -> None:
    state = MonitorState(StateSettings(retrieval_capacity=100))
    state.update(batch_of(list(outputs("claude-2.1").values())[:64]))
    store = SnapshotStore(tmp_path)
    store.save(state.snapshot(), {})
    loaded = store.load_latest()
    assert loaded is not None
    restored = MonitorState(StateSettings(retrieval_capacity=100))
    restored.restore(loaded.state)
    a = state.view().descriptors("m", "v1", "response")
    b = restored.view().descriptors("m", "v1", "response")
    assert a is not None and b is not None
    assert np.array_equal(a.hist, b.hist) and np.array_equal(a.sums, b.sums)


def test_a_snapshot_from_before_descriptors_still_restores() -> None:
    state = MonitorState(StateSettings(retrieval_capacity=100))
    state.update(batch_of(["An answer.", "Another one?"]))
    old = state.snapshot()
    del old["descriptors"]  # what a state written before descriptors existed holds
    restored = MonitorState(StateSettings(retrieval_capacity=100))
    restored.restore(old)
    assert restored.counts("m", "v1", "response").n_documents == 2
    assert restored.view().descriptors("m", "v1", "response") is None
    restored.update(batch_of(["A third."], start=2))
    later = restored.view()
    stats = later.descriptors("m", "v1", "response")
    assert stats is not None and stats.n_documents == 1  # counted from the restore on
    assert later.counts("m", "v1", "response").n_documents == 3


def test_token_descriptor_reads_the_encoders_token_counts() -> None:
    b = batch_of(["one two", "three"])
    codes = SparseCodes.from_rows([[0], [0]], [[1.0], [1.0]], n_tokens=[7, 256],
                                  truncated=[False, True])
    counter = DescriptorCounter(WindowSettings())
    counter.update(b.model_copy(update={"response": codes}))
    stats = counter.stats("m", "v1", "response")
    assert stats.mean("tokens") == pytest.approx(131.5)
