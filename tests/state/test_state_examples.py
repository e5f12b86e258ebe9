"""Example reservoirs: exact top-k by activation, privacy, bounded texts, merge."""

from __future__ import annotations

import pickle

import numpy as np

from saewatch.state.examples import ExampleReservoirs
from saewatch.state.testing import make_batch


def random_rows(rng: np.random.Generator, n: int, d: int) -> tuple[list, list]:
    rows = [sorted(rng.choice(d, 3, replace=False).tolist()) for _ in range(n)]
    vals = [rng.uniform(0.1, 10, 3).round(3).tolist() for _ in range(n)]
    return rows, vals


def brute_force_top(rows: list, vals: list, feature: int, k: int, start: int = 0) -> list:
    hits = [(v[r.index(feature)], f"e{start + i}") for i, (r, v) in enumerate(zip(rows, vals, strict=True))
            if feature in r]
    return [e for _, e in sorted(hits, key=lambda h: -h[0])[:k]]


def test_keeps_exactly_the_k_strongest_per_feature() -> None:
    rng = np.random.default_rng(0)
    rows, vals = random_rows(rng, 400, 10)
    ex = ExampleReservoirs(d_sae=10, k=3)
    for i in range(0, 400, 64):
        ex.update(make_batch(rows[i:i + 64], 10, values=vals[i:i + 64], start=i))
    for f in range(10):
        got = [s.event_id for s in ex.examples(f, "m", "v1", "response")]
        assert got == brute_force_top(rows, vals, f, 3)
    snippet = ex.examples(0, "m", "v1", "response")[0]
    assert snippet.text == f"response {snippet.event_id[1:]}"


def test_texts_are_bounded_and_private_mode_keeps_none() -> None:
    rng = np.random.default_rng(1)
    ex = ExampleReservoirs(d_sae=10, k=2, store_snippets=False)
    for i in range(0, 20_000, 500):
        rows, vals = random_rows(rng, 500, 10)
        ex.update(make_batch(rows, 10, values=vals, start=i))
    assert len(ex._texts) <= 2 * 10 * 2 * 2 + 4096  # live handles, plus GC slack
    assert all(texts == {} for _, texts in ex._texts.values())
    assert ex.examples(3, "m", "v1", "response")[0].text == ""


def test_merge_keeps_the_top_k_of_the_union() -> None:
    rng = np.random.default_rng(2)
    rows, vals = random_rows(rng, 300, 8)
    a, b = ExampleReservoirs(8, 4), ExampleReservoirs(8, 4)
    a.update(make_batch(rows[:150], 8, values=vals[:150]))
    b.update(make_batch(rows[150:], 8, values=vals[150:], start=150))
    a.merge(b)
    for f in range(8):
        assert [s.event_id for s in a.examples(f, "m", "v1", "response")] == brute_force_top(
            rows, vals, f, 4)
    assert a.examples(2, "m", "v1", "response")[0].text.startswith("response ")


def test_snapshot_and_pickle_round_trip() -> None:
    ex = ExampleReservoirs(4, 2)
    ex.update(make_batch([[1], [1, 2]], 4, values=[[1.0], [2.0, 3.0]]))
    r = ExampleReservoirs(4, 2)
    r.restore(ex.snapshot())
    for other in (r, pickle.loads(pickle.dumps(ex))):
        assert other.examples(1, "m", "v1", "response") == ex.examples(1, "m", "v1", "response")
    assert ex.examples(9, "m", "v1", "response") == []
    assert ex.examples(1, "m", "nope", "response") == []
