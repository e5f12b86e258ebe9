"""Retrieval index: AND/OR, ranking, version filter, ring eviction, privacy, snapshots, merge,
co-occurrence counts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from saewatch.state.exceptions import TooManyFeaturesError
from saewatch.state.retrieval import RetrievalIndex, _strongest
from saewatch.state.testing import make_batch


def ids(hits: list) -> list[str]:
    return [h.event_id for h in hits]


def test_or_and_ranking_by_summed_activation() -> None:
    index = RetrievalIndex(capacity=10)
    index.update(make_batch([[1, 2], [2], [1], [3]], 4,
                            values=[[1.0, 1.0], [0.5], [3.0], [9.0]]))
    assert ids(index.retrieve([1, 2])) == ["e2", "e0", "e1"]
    assert ids(index.retrieve([1, 2], mode="and")) == ["e0"]
    hit = index.retrieve([1, 2], mode="and")[0]
    assert hit.score == 2.0 and hit.matched_features == (1, 2)
    assert hit.snippet == "response 0" and hit.model_version == "v1"
    assert index.retrieve([7]) == [] and index.retrieve([]) == []


def test_filters_by_version_and_field() -> None:
    index = RetrievalIndex(capacity=10)
    index.update(make_batch([[1]], 4, version="a", prompt_rows=[[3]]))
    index.update(make_batch([[1]], 4, version="b", start=1))
    assert ids(index.retrieve([1], model_version="b")) == ["e1"]
    assert ids(index.retrieve([1], model_id="other")) == []
    assert ids(index.retrieve([3], field="prompt")) == ["e0"]


def test_ring_keeps_only_the_most_recent_events() -> None:
    index = RetrievalIndex(capacity=5)
    for i in range(0, 20, 4):
        index.update(make_batch([[1]] * 4, 4, start=i))
    assert len(index) == 5
    assert sorted(ids(index.retrieve([1], limit=50))) == ["e15", "e16", "e17", "e18", "e19"]
    assert sum(len(c.offset) for c in index._chunks["response"]) <= 5 + 4  # bounded postings


def test_snippets_truncated_or_not_stored() -> None:
    index = RetrievalIndex(capacity=5, snippet_chars=4)
    index.update(make_batch([[1]], 4))
    assert index.retrieve([1])[0].snippet == "resp"
    private = RetrievalIndex(capacity=5, store_snippets=False)
    private.update(make_batch([[1]], 4))
    assert private.retrieve([1])[0].snippet is None
    assert all(t is None for t in private._text["response"])


def test_only_the_strongest_features_per_event_are_indexed() -> None:
    rows, feats, acts = _strongest(np.array([0, 4, 5]), np.array([1, 2, 3, 4, 9]),
                                   np.array([0.1, 0.9, 0.5, 0.7, 0.2], dtype=np.float16), 2)
    assert list(zip(rows.tolist(), feats.tolist(), strict=True)) == [(0, 2), (0, 4), (1, 9)]
    index = RetrievalIndex(capacity=5, max_features=1)
    index.update(make_batch([[1, 2]], 4, values=[[0.1, 0.9]]))
    assert index.retrieve([1]) == [] and ids(index.retrieve([2])) == ["e0"]


def test_snapshot_pickle_and_merge() -> None:
    a = RetrievalIndex(capacity=4)
    a.update(make_batch([[1], [2], [1]], 4))
    r = RetrievalIndex(capacity=4)
    r.restore(a.snapshot())
    assert ids(r.retrieve([1])) == ids(a.retrieve([1])) == ["e2", "e0"]
    assert ids(pickle.loads(pickle.dumps(a)).retrieve([2])) == ["e1"]
    b = RetrievalIndex(capacity=4)
    b.update(make_batch([[1], [1]], 4, start=10))
    a.merge(b)  # 5 events into a ring of 4: the oldest of a is dropped
    assert sorted(ids(a.retrieve([1, 2]))) == ["e1", "e10", "e11", "e2"]


def test_cooccurrence_counts_match_a_brute_force_count_over_the_live_ring() -> None:
    rng = np.random.default_rng(3)
    index = RetrievalIndex(capacity=300, max_features=6)
    docs: list[tuple[str, str, list[int]]] = []
    for b in range(8):
        version, model_id = ("v1", "v2", "v3")[b % 3], "m" if b != 5 else "other"
        rows = [sorted(rng.choice(20, size=rng.integers(0, 9), replace=False).tolist())
                for _ in range(50)]
        values = [rng.uniform(0.1, 5, len(r)).tolist() for r in rows]
        batch = make_batch(rows, 20, version=version, model_id=model_id, values=values,
                           start=50 * b)
        index.update(batch)
        # What the ring indexes: each event's 6 strongest features.
        kept = [sorted(np.array(r)[np.argsort(v)[::-1][:6]].tolist()) if r else []
                for r, v in zip(rows, values, strict=True)]
        docs += [(model_id, version, k) for k in kept]
    live = docs[-300:]  # the ring's capacity: the first two batches have left
    features = [3, 0, 7, 11, 19]
    c = index.cooccurrence(features, "m", ["v2", "v1"])
    assert c.versions == ("v2", "v1") and c.features == tuple(features)
    for s, version in enumerate(c.versions):
        mine = [set(k) for m, v, k in live if (m, v) == ("m", version)]
        assert c.n_documents[s] == len(mine)
        assert c.saturated[s] == sum(len(k) >= 6 for k in mine)
        for i, f in enumerate(features):
            for j, g in enumerate(features):
                assert c.joint[s, i, j] == sum(f in k and g in k for k in mine)
        assert c.any_present([0, 19])[s] == sum(bool({0, 19} & k) for k in mine)
    assert np.allclose(c.npmi, c.npmi.T) and np.all(np.diag(c.npmi) == 1.0)
    frozen = index.frozen()
    index.update(make_batch([[3, 0]] * 300, 20, version="v1", start=400))
    assert frozen.cooccurrence(features, "m", ["v2", "v1"]).joint.tolist() == c.joint.tolist()
    assert index.cooccurrence([3], "m", ["v2"]).n_documents.tolist() == [0]


def test_cooccurrence_of_too_many_features_says_to_split_the_query() -> None:
    index = RetrievalIndex(capacity=10)
    index.update(make_batch([[1]], 100))
    with pytest.raises(TooManyFeaturesError, match="at most 64"):
        index.cooccurrence(range(65), "m", ["v1"])
