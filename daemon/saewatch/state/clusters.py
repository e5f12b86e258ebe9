"""Streaming clusters of response documents: river k-means in a low-dimensional view of the codes.

Raw SAE codes are too wide and sparse for river's clusterers (see docs/BENCHMARKS.md, "State"), so
each document's binarized, IDF-weighted code is mapped to ``dims`` dimensions
(:mod:`saewatch.state.projection`). The first ``warmup`` documents are buffered; from them the
basis (``projection="pca"``: their principal directions; ``"random"``: a seeded Gaussian matrix)
and the initial centres (k-means++ and Lloyd; river's own random N(0, 1) centres leave clusters
empty or merge topics) are computed, re-done each time the buffer doubles and frozen at its end.
Afterwards river's :class:`~river.cluster.KMeans` learns from every ``learn_every``-th document
(river runs at Python speed, ~0.5 ms per point here; the schedule depends on the event count only,
so it is deterministic and independent of batch sizes). Every document is assigned to the nearest
centre with one vectorised distance computation.

Per (model_id, model_version) the state counts documents per cluster; per cluster it counts how
often each feature fired, from which clusters are described by their most over-represented features
(lift of the in-cluster frequency over the overall frequency). Documents seen during the warm-up
are counted under the centres of that moment. Merge: ``other``'s centres are mapped back through
its basis and into this one; the counts of its cluster ``c`` go to this state's cluster nearest
to centre ``c``, and this state's centres and basis are kept — cluster identities are local to a
clusterer, so that is an approximation (exact when both sides share one clusterer, e.g. a
snapshot and its continuation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, Self

import numpy as np
from river.cluster import KMeans

from saewatch.models import ClusterShare, FeatureBatch
from saewatch.state.base import StateComponent
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import VersionKey, group_rows, key_to_str, version_from_str
from saewatch.state.projection import learn_basis, project, random_basis

logger = logging.getLogger(__name__)

MIN_CLUSTER_DOCS = 5  # fewer documents do not describe a cluster


class StreamingClusters(StateComponent):
    """Per-version shares of streaming clusters of response codes.

    Parameters
    ----------
    d_sae
        Number of SAE features.
    n_clusters
        k of the streaming k-means.
    dims
        Width of the low-dimensional view.
    warmup
        Documents buffered to place the initial centres (k-means++ and Lloyd).
    learn_every
        After the warm-up, river learns from one document in ``learn_every``.
    halflife
        river KMeans step towards each learnt point.
    seed
        Seeds the projection and river.
    projection
        ``"pca"`` (learnt at warm-up) or ``"random"`` (seeded Gaussian).

    Examples
    --------
    >>> from saewatch.state.testing import make_batch
    >>> cl = StreamingClusters(d_sae=8, n_clusters=2, dims=8, seed=1)
    >>> cl.update(make_batch([[0, 1], [0, 1], [5, 6], [5, 6]] * 10, 8))
    >>> shares = cl.cluster_shares()
    >>> sorted(s.documents for s in shares)
    [20, 20]
    """

    def __init__(
        self,
        d_sae: int,
        n_clusters: int = 16,
        dims: int = 48,
        warmup: int = 2_000,
        learn_every: int = 256,
        halflife: float = 0.05,
        seed: int = 42,
        projection: Literal["pca", "random"] = "pca",
    ) -> None:
        self.d_sae = d_sae
        self.n_clusters = n_clusters
        self.dims = dims
        self.warmup = warmup
        self.learn_every = learn_every
        self.halflife = halflife
        self.seed = seed
        self.projection = projection
        self._weights = np.ones(d_sae, dtype=np.float32)
        self._basis = random_basis(d_sae, dims, seed)
        self._model = KMeans(n_clusters=n_clusters, halflife=halflife, seed=seed)
        self._centres: np.ndarray | None = None  # the model's centres as an array, until moved
        # Warm-up buffer of binarized response codes (CSR); None once the warm-up is over.
        self._buffer: tuple[np.ndarray, np.ndarray] | None = (
            np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32))
        self._seen = 0  # documents assigned so far; drives the learning schedule
        self._placed_at = 0  # buffer size when the centres were last placed
        self._docs: dict[VersionKey, np.ndarray] = {}
        self._fired = np.zeros((n_clusters, d_sae), dtype=np.int64)

    def project(self, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``[n, dims]`` float32 coordinates of binarized CSR rows in the current basis."""
        return project(indptr, indices, self._weights, self._basis)

    def centres(self) -> np.ndarray:
        """Current centres ``[n_clusters, dims]`` (river initialises them lazily, seeded).

        Read from river's dicts only after they moved (a learning step or a placement): the
        read is a Python loop over every coordinate, and most batches learn nothing."""
        if self._centres is None:
            self._centres = np.array([[self._model.centers[c][j] for j in range(self.dims)]
                                      for c in range(self.n_clusters)], dtype=np.float32)
        return self._centres.copy()

    def assign(self, x: np.ndarray) -> np.ndarray:
        c = self.centres()
        d2 = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
        nearest: np.ndarray = np.argmin(d2, axis=1)
        return nearest

    def update(self, batch: FeatureBatch) -> None:
        codes = batch.response
        if self._buffer is not None:
            self._warm_up(codes.indptr, codes.indices)
        x = self.project(codes.indptr, codes.indices)
        first = max(self._seen, self.warmup)
        seq = np.arange(self._seen, self._seen + len(x))
        for row in x[(seq >= first) & ((seq - self.warmup) % self.learn_every == 0)]:
            self._model.learn_one(dict(enumerate(row.tolist())))  # type: ignore[no-untyped-call]
            self._centres = None
        self._seen += len(x)
        labels = self.assign(x)
        for version, rows in group_rows(batch).items():
            docs = self._docs.setdefault(version, np.zeros(self.n_clusters, dtype=np.int64))
            docs += np.bincount(labels[rows], minlength=self.n_clusters)
        lengths = np.diff(codes.indptr)
        flat = np.repeat(labels, lengths) * self.d_sae + codes.indices
        self._fired += np.bincount(flat, minlength=self._fired.size).reshape(self._fired.shape)

    def _warm_up(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        """Buffer documents; (re)learn basis and centres when the buffer doubles or fills."""
        held, held_idx = self._buffer  # type: ignore[misc]
        take = min(len(indptr) - 1, self.warmup - (len(held) - 1))
        new_ptr = np.concatenate([held, held[-1] + indptr[1:take + 1]])
        new_idx = np.concatenate([held_idx, indices[: indptr[take]]])
        self._buffer = (new_ptr, new_idx)
        n = len(new_ptr) - 1
        if n >= self.n_clusters and (n >= 2 * self._placed_at or n >= self.warmup):
            if self.projection == "pca":
                self._weights, self._basis = learn_basis(new_ptr, new_idx, self.d_sae, self.dims,
                                                         self.seed)
            x = self.project(new_ptr, new_idx)
            self._set_centres(_kmeans(x, self.n_clusters, self.seed))
            self._placed_at = n
        if n >= self.warmup:
            self._buffer = None  # warm-up over: basis frozen, river takes it from here

    def _set_centres(self, centres: np.ndarray) -> None:
        for c, centre in enumerate(np.asarray(centres, dtype=np.float64)):
            self._model.centers[c].update(enumerate(centre.tolist()))
        self._centres = None

    def describe(self, cluster: int, k: int = 5) -> list[int]:
        """The ``k`` features most over-represented in ``cluster`` (smoothed lift)."""
        docs = (np.sum(list(self._docs.values()), axis=0) if self._docs
                else np.zeros(self.n_clusters))  # a bound state before its first event
        n_c, n = int(docs[cluster]), int(docs.sum())
        if n_c < MIN_CLUSTER_DOCS:
            return []
        inside = (self._fired[cluster] + 0.5) / (n_c + 1.0)
        overall = (self._fired.sum(0) + 0.5) / (n + 1.0)
        # Require a real presence in the cluster so a single odd document does not top the list.
        lift = np.where(self._fired[cluster] >= max(2, 0.05 * n_c), inside / overall, 0.0)
        best = np.argsort(-lift, kind="stable")[:k]
        return [int(f) for f in best if lift[f] > 1.0]

    def cluster_shares(self, labels: Mapping[int, str] | None = None) -> list[ClusterShare]:
        described = {c: self.describe(c) for c in range(self.n_clusters)}
        out = []
        for (model_id, version), docs in sorted(self._docs.items()):
            total = int(docs.sum())
            for c in np.flatnonzero(docs):
                feats = described[int(c)]
                out.append(ClusterShare(
                    cluster=int(c), model_id=model_id, model_version=version,
                    share=float(docs[c] / total), documents=int(docs[c]),
                    top_features=tuple(feats),
                    top_labels=tuple((labels or {}).get(f, "") for f in feats),
                ))
        return out

    def snapshot(self) -> dict[str, Any]:
        versions = sorted(self._docs)
        return {
            "d_sae": self.d_sae, "n_clusters": self.n_clusters, "dims": self.dims,
            "seed": self.seed, "centres": self.centres(), "seen": self._seen, "placed_at": self._placed_at,
            "weights": self._weights.copy(), "basis": self._basis.copy(),
            "buffer_indptr": self._buffer[0].copy() if self._buffer else np.zeros(0, np.int64),
            "buffer_indices": self._buffer[1].copy() if self._buffer else np.zeros(0, np.int32),
            "versions": [key_to_str(v) for v in versions],
            "docs": np.stack([self._docs[v] for v in versions]) if versions else
                    np.zeros((0, self.n_clusters), dtype=np.int64),
            "fired": self._fired.copy(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        shape = (int(snapshot["d_sae"]), int(snapshot["n_clusters"]), int(snapshot["dims"]))
        if shape != (self.d_sae, self.n_clusters, self.dims) or snapshot["seed"] != self.seed:
            raise IncompatibleStateError(
                f"cluster snapshot has d_sae/k/dims/seed {shape}/{snapshot['seed']}, settings "
                f"{(self.d_sae, self.n_clusters, self.dims)}/{self.seed}: keep them or reset state"
            )
        self.__init__(*shape[:2], shape[2], self.warmup,  # type: ignore[misc]
                      self.learn_every, self.halflife, self.seed, self.projection)
        self._set_centres(snapshot["centres"])
        self._seen, self._placed_at = int(snapshot["seen"]), int(snapshot["placed_at"])
        self._weights[:] = snapshot["weights"]
        self._basis[:] = snapshot["basis"]
        ptr = np.asarray(snapshot["buffer_indptr"], dtype=np.int64)
        self._buffer = (ptr, np.asarray(snapshot["buffer_indices"], dtype=np.int32)) \
            if len(ptr) else None
        for name, docs in zip(snapshot["versions"], snapshot["docs"], strict=True):
            self._docs[version_from_str(name)] = np.array(docs, dtype=np.int64)
        self._fired[:] = snapshot["fired"]

    def merge(self, other: Self) -> None:
        if (other.d_sae, other.dims, other.seed) != (self.d_sae, self.dims, self.seed):
            raise IncompatibleStateError("clusterers differ in d_sae/dims/seed: cannot merge")
        # other's centres, back through its basis (weighted feature space), into ours
        target = self.assign(other.centres() @ other._basis.T @ self._basis)
        for version, docs in other._docs.items():
            mine = self._docs.setdefault(version, np.zeros(self.n_clusters, dtype=np.int64))
            np.add.at(mine, target, docs)
        np.add.at(self._fired, target, other._fired)


LLOYD_ITERATIONS = 10  # enough to settle a k-means++ start on a few thousand points
RESTARTS = 4  # k-means is a local search: keep the best of a few seeded starts (as sklearn does)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Best-of-``RESTARTS`` greedy k-means++ and Lloyd; centres ``[k, dims]`` (deterministic)."""
    best, best_inertia = np.zeros((k, x.shape[1])), np.inf
    for restart in range(RESTARTS):
        centres = _lloyd(x, _kmeans_pp(x, k, np.random.default_rng([seed, restart])))
        inertia = float(_sq_dist(x, centres).min(axis=1).sum())
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return best


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: each new centre is the best of ``2 + log k`` sampled candidates."""
    trials = 2 + int(np.log(k))
    centres = [x[rng.integers(len(x))]]
    closest = _sq_dist(x, np.array(centres))[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        candidates = (rng.choice(len(x), size=trials, p=closest / total) if total > 0
                      else rng.integers(len(x), size=trials))
        options = np.minimum(closest[:, None], _sq_dist(x, x[candidates]))
        pick = int(np.argmin(options.sum(axis=0)))
        centres.append(x[candidates[pick]])
        closest = options[:, pick]
    return np.array(centres, dtype=np.float64)


def _lloyd(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    for _ in range(LLOYD_ITERATIONS):
        labels = np.argmin(_sq_dist(x, centres), axis=1)
        for j in range(len(centres)):
            members = x[labels == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    dist: np.ndarray = np.maximum((x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :],
                                  0.0)
    return dist
