"""Retrieval index: AND/OR, ranking, version filter, ring eviction, privacy, snapshots, merge."""

from __future__ import annotations

import pickle

import numpy as np

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
