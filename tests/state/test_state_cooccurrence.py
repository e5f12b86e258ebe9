"""NPMI co-occurrence: hand-computed values, cross-field and metadata pairs, refresh, merge."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from saewatch.state.cooccurrence import CooccurrenceCounter
from saewatch.state.neighbours import feature_neighbours, top_pairs
from saewatch.state.npmi import npmi
from saewatch.state.testing import make_batch

# 10 documents: feature 0 in 5, feature 1 in 4, both in 3; feature 2 in 2, never with 0.
ROWS = [[0, 1], [0, 1], [0, 1], [0], [0], [1], [2], [2], [], []]


def test_npmi_matches_the_formula_by_hand() -> None:
    co = CooccurrenceCounter(d_sae=4, top_n=4)
    co.update(make_batch(ROWS, 4))
    expected = math.log(0.3 / (0.5 * 0.4)) / -math.log(0.3)
    assert co.pair_count("response", 0, 1) == 3
    assert co.npmi("response", 0, 1) == pytest.approx(expected)  # 0.33677
    assert co.npmi("response", 0, 2) == -1.0
    assert math.isnan(co.npmi("response", 0, 3))  # never fired: not tracked


def test_npmi_function_edge_cases() -> None:
    assert float(npmi(5, 5, 5, 5, 5, 5)) == 1.0
    assert float(npmi(0, 10, 3, 10, 3, 10)) == -1.0
    assert float(npmi(1, 4, 2, 4, 2, 4)) == pytest.approx(0.0)


def test_prompt_response_and_metadata_pairs() -> None:
    co = CooccurrenceCounter(d_sae=8, top_n=8)
    meta = [{"tenant": "a"}] * 6 + [{"tenant": "b"}] * 6
    rows = [[1]] * 6 + [[2]] * 6
    prompts = [[5]] * 6 + [[6]] * 6
    co.update(make_batch(rows, 8, prompt_rows=prompts, metadata=meta))
    assert co.cross_neighbours("prompt", 5) == [(1, 1.0, 6)]
    assert co.cross_neighbours("response", 2) == [(6, 1.0, 6)]
    assert co.metadata_neighbours("response", 1) == [("tenant", "a", 1.0, 6)]
    kinds = {(n.kind, n.feature, n.metadata_value) for n in feature_neighbours(co, 1)}
    assert kinds == {("prompt_feature", 5, None), ("metadata", None, "a")}


def test_top_pairs_are_sorted_by_npmi_and_labelled() -> None:
    co = CooccurrenceCounter(d_sae=4, top_n=4)
    co.update(make_batch(ROWS * 3, 4))
    pairs = top_pairs(co, "response", k=5, min_count=1, labels={0: "zero", 1: "one"})
    assert [(p.feature, p.other.feature) for p in pairs] == [(0, 1)]  # (0, 2) never co-fired
    assert pairs[0].label == "zero" and pairs[0].other.label == "one"
    assert pairs[0].other.count == 9


def test_memory_is_bounded_and_refresh_tracks_new_frequent_features() -> None:
    co = CooccurrenceCounter(d_sae=200, top_n=10)
    rng = np.random.default_rng(1)
    early = [sorted(rng.choice(100, 5, replace=False).tolist()) for _ in range(1500)]
    co.update(make_batch(early, 200))
    late = [[150, 151]] * 3000  # 150 and 151 become the most frequent features
    for i in range(0, 3000, 500):
        co.update(make_batch(late[i:i + 500], 200, start=1500 + i))
    assert co._c["response"].shape == (10, 10)
    assert {150, 151} <= set(co.tracked("response").tolist())
    assert co.npmi("response", 150, 151) > 0.5
    assert len(co.tracked("response")) <= 10


def test_merge_equals_one_stream_when_everything_is_tracked() -> None:
    rng = np.random.default_rng(2)
    rows = [sorted(rng.choice(12, 3, replace=False).tolist()) for _ in range(300)]
    meta = [{"route": str(i % 3)} for i in range(300)]
    whole, a, b = (CooccurrenceCounter(d_sae=12, top_n=12) for _ in range(3))
    whole.update(make_batch(rows, 12, prompt_rows=rows, metadata=meta))
    a.update(make_batch(rows[:100], 12, prompt_rows=rows[:100], metadata=meta[:100]))
    b.update(make_batch(rows[100:], 12, prompt_rows=rows[100:], metadata=meta[100:]))
    a.merge(b)
    for x, y in ((2, 5), (0, 11), (3, 4)):
        assert a.pair_count("response", x, y) == whole.pair_count("response", x, y)
        assert a.npmi("response", x, y) == pytest.approx(whole.npmi("response", x, y))
    merged, single = (sorted(s.metadata_neighbours("response", 3, 1)) for s in (a, whole))
    assert [m[:2] + (m[3],) for m in merged] == [m[:2] + (m[3],) for m in single]
    assert [m[2] for m in merged] == pytest.approx([m[2] for m in single])
    assert sorted(a.cross_neighbours("prompt", 7, 1)) == sorted(whole.cross_neighbours("prompt", 7, 1))


def test_snapshot_and_pickle_round_trip() -> None:
    co = CooccurrenceCounter(d_sae=4, top_n=4)
    co.update(make_batch(ROWS, 4, metadata=[{"t": "x"}] * 10))
    r = CooccurrenceCounter(d_sae=4, top_n=4)
    r.restore(co.snapshot())
    for other in (r, pickle.loads(pickle.dumps(co))):
        assert other.npmi("response", 0, 1) == co.npmi("response", 0, 1)
        assert other.metadata_neighbours("response", 0, 1) == co.metadata_neighbours("response", 0, 1)


def test_merge_with_different_tracked_sets_adds_counts_and_exposures() -> None:
    a, b = CooccurrenceCounter(d_sae=10, top_n=3), CooccurrenceCounter(d_sae=10, top_n=3)
    a.update(make_batch([[0, 1]] * 8 + [[2]] * 4, 10))  # a tracks 0, 1, 2
    b.update(make_batch([[0, 1]] * 2 + [[5, 6]] * 9, 10))  # b tracks 5, 6 and 0 (tie 0/1 -> 0)
    a.merge(b)
    assert sorted(a.tracked("response").tolist()) == [0, 1, 5]  # top 3 of the merged counts
    # (0, 1): a saw 8 co-firings in 12 documents; b did not track 1, so its documents add none
    assert a.pair_count("response", 0, 1) == 8
    slot0, slot1 = a._slot["response"][0], a._slot["response"][1]
    assert a._e["response"][slot0, slot1] == 12
    assert a._e["response"][slot0, slot0] == 12 + 11  # 0 was tracked on both sides
    assert a.npmi("response", 0, 1) > 0.9


def test_counts_equal_a_brute_force_count_for_every_pair_in_both_orders() -> None:
    """Within a field only one triangle is accumulated per batch; queries see the full matrix."""
    rng = np.random.default_rng(5)
    d = 16
    rows = [sorted(rng.choice(d, rng.integers(0, 6), replace=False).tolist()) for _ in range(400)]
    prompts = [sorted(rng.choice(d, rng.integers(0, 4), replace=False).tolist()) for _ in range(400)]
    co = CooccurrenceCounter(d_sae=d, top_n=d)
    for i in range(0, 400, 100):  # several batches, so accumulation across batches is checked
        co.update(make_batch(rows[i:i + 100], d, prompt_rows=prompts[i:i + 100], start=i))
    r = np.zeros((400, d), dtype=np.int64)
    p = np.zeros((400, d), dtype=np.int64)
    for j, (rr, pp) in enumerate(zip(rows, prompts, strict=True)):
        r[j, rr], p[j, pp] = 1, 1
    within, cross = r.T @ r, p.T @ r
    for a in range(d):
        for b in range(d):
            assert co.pair_count("response", a, b) == within[a, b]
        got = {f: c for f, _, c in co.cross_neighbours("prompt", a, min_count=1)}
        want = {f: int(cross[a, f]) for f in range(d) if cross[a, f] >= 1}
        assert got == want
