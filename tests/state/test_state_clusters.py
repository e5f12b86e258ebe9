"""Streaming clusters: separable groups are found, described, restored and merged."""

from __future__ import annotations

import pickle

import numpy as np

from saewatch.state.clusters import StreamingClusters
from saewatch.state.testing import make_batch


def three_topics(rng: np.random.Generator, n: int) -> tuple[list, list]:
    """Documents drawn from three disjoint groups of features (the 'topics')."""
    topics = [np.arange(0, 20), np.arange(20, 40), np.arange(40, 60)]
    labels = rng.integers(0, 3, n).tolist()
    rows = [sorted(rng.choice(topics[t], 6, replace=False).tolist()) for t in labels]
    return rows, labels


def purity(cl: StreamingClusters, rows: list, labels: list) -> float:
    batch = make_batch(rows, 64)
    assigned = cl.assign(cl.project(batch.response.indptr, batch.response.indices))
    total = 0
    for c in np.unique(assigned):
        total += np.bincount(np.asarray(labels)[assigned == c]).max()
    return total / len(rows)


def test_finds_separable_topics_and_describes_them() -> None:
    rng = np.random.default_rng(0)
    cl = StreamingClusters(d_sae=64, n_clusters=3, dims=32, warmup=200, learn_every=4, seed=3)
    rows, labels = three_topics(rng, 1500)
    for i in range(0, 1500, 100):
        cl.update(make_batch(rows[i:i + 100], 64, start=i))
    assert purity(cl, *three_topics(rng, 300)) > 0.9
    for c in range(3):
        feats = cl.describe(c)
        assert feats and len({f // 20 for f in feats}) == 1  # one topic's features


def test_shares_are_per_version_and_sum_to_one() -> None:
    rng = np.random.default_rng(1)
    cl = StreamingClusters(d_sae=64, n_clusters=3, dims=16, seed=0)
    rows, _ = three_topics(rng, 300)
    cl.update(make_batch(rows[:200], 64, version="a"))
    cl.update(make_batch(rows[200:], 64, version="b", start=200))
    shares = cl.cluster_shares(labels={0: "zero"})
    for version, docs in (("a", 200), ("b", 100)):
        mine = [s for s in shares if s.model_version == version]
        assert sum(s.documents for s in mine) == docs
        assert abs(sum(s.share for s in mine) - 1.0) < 1e-9


def test_snapshot_restores_the_same_assignments_and_pickles() -> None:
    rng = np.random.default_rng(2)
    rows, _ = three_topics(rng, 400)
    cl = StreamingClusters(d_sae=64, n_clusters=3, dims=16, seed=5)
    cl.update(make_batch(rows, 64))
    r = StreamingClusters(d_sae=64, n_clusters=3, dims=16, seed=5)
    r.restore(cl.snapshot())
    x = cl.project(*(lambda b: (b.response.indptr, b.response.indices))(make_batch(rows, 64)))
    for other in (r, pickle.loads(pickle.dumps(cl))):
        np.testing.assert_array_equal(other.assign(x), cl.assign(x))
        assert other.cluster_shares() == cl.cluster_shares()


def test_merge_adds_every_document_of_the_other_side() -> None:
    rng = np.random.default_rng(3)
    rows, _ = three_topics(rng, 400)
    a = StreamingClusters(d_sae=64, n_clusters=3, dims=16, seed=1)
    b = StreamingClusters(d_sae=64, n_clusters=3, dims=16, seed=1)
    a.update(make_batch(rows[:250], 64))
    b.update(make_batch(rows[250:], 64, start=250))
    a.merge(b)
    assert sum(s.documents for s in a.cluster_shares()) == 400
    assert int(a._fired.sum()) == sum(len(r) for r in rows)


def test_rows_without_features_anywhere_in_a_batch_project_to_zero() -> None:
    from saewatch.state.projection import weighted_rows

    rows = weighted_rows(np.array([0, 0, 2, 2]), np.array([1, 3]), np.full(8, 2.0, np.float32))
    dense = rows.toarray()
    assert dense[0].sum() == dense[2].sum() == 0.0  # empty first and last rows
    np.testing.assert_allclose(dense[1, [1, 3]], [2 ** -0.5, 2 ** -0.5], rtol=1e-6)
