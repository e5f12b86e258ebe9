"""Streaming clusters of response documents: river k-means over a random projection.

Raw SAE codes are too wide and sparse for river's clusterers (see docs/BENCHMARKS.md, "State"), so
each document's *binarized* code is projected with a fixed, seeded Gaussian matrix to ``dims``
dimensions (``x = P[active].sum(0) / sqrt(len(active))``, so documents sharing features land close;
Johnson-Lindenstrauss keeps cosine geometry). The first ``warmup`` projected documents are buffered and
the centres are placed by k-means++ and a few Lloyd iterations over that buffer (river's own
initialisation, random N(0, 1) centres, leaves clusters empty or merges topics); afterwards river's
:class:`~river.cluster.KMeans` learns from every ``learn_every``-th document (river runs at Python
speed, ~0.5 ms per point here; the schedule depends on the event count only, so it is
deterministic and independent of batch sizes). Every document is assigned to the nearest centre
with one vectorised distance computation.

Per (model_id, model_version) the state counts documents per cluster; per cluster it counts how
often each feature fired, from which clusters are described by their most over-represented features
(lift of the in-cluster frequency over the overall frequency). Merge: counts of ``other``'s cluster
``c`` are added to this state's cluster nearest to ``other``'s centre ``c``, and this state's
centres are kept — cluster identities are local to a clusterer, so that is an approximation
(exact when both sides share one clusterer, e.g. a snapshot and its continuation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from river.cluster import KMeans

from saewatch.models import ClusterShare, FeatureBatch
from saewatch.state.base import StateComponent
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import VersionKey, group_rows, key_to_str, version_from_str

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
        Width of the random projection.
    warmup
        Documents buffered to place the initial centres (k-means++ and Lloyd).
    learn_every
        After the warm-up, river learns from one document in ``learn_every``.
    halflife
        river KMeans step towards each learnt point.
    seed
        Seeds the projection and river.

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
    ) -> None:
        self.d_sae = d_sae
        self.n_clusters = n_clusters
        self.dims = dims
        self.warmup = warmup
        self.learn_every = learn_every
        self.halflife = halflife
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._proj = rng.standard_normal((d_sae, dims)).astype(np.float32)
        self._model = KMeans(n_clusters=n_clusters, halflife=halflife, seed=seed)
        self._buffer: np.ndarray | None = np.zeros((0, dims), dtype=np.float32)  # warm-up only
        self._seen = 0  # documents assigned so far; drives the learning schedule
        self._placed_at = 0  # buffer size when the centres were last placed
        self._docs: dict[VersionKey, np.ndarray] = {}
        self._fired = np.zeros((n_clusters, d_sae), dtype=np.int64)

    def project(self, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Random projection of binarized CSR rows, ``[n, dims]`` float32."""
        lengths = np.diff(indptr)
        ones = np.ones(len(indices), dtype=np.float32)
        binary = sp.csr_matrix((ones, indices, indptr), shape=(len(lengths), self.d_sae))
        sums = np.asarray(binary @ self._proj, dtype=np.float32)
        return sums / np.sqrt(np.maximum(lengths, 1))[:, None].astype(np.float32)

    def centres(self) -> np.ndarray:
        """Current centres ``[n_clusters, dims]`` (river initialises them lazily, seeded)."""
        return np.array([[self._model.centers[c][j] for j in range(self.dims)]
                         for c in range(self.n_clusters)], dtype=np.float32)

    def assign(self, x: np.ndarray) -> np.ndarray:
        c = self.centres()
        d2 = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
        return np.argmin(d2, axis=1)

    def update(self, batch: FeatureBatch) -> None:
        codes = batch.response
        x = self.project(codes.indptr, codes.indices)
        self._learn(x)
        self._seen += len(x)
        labels = self.assign(x)
        for version, rows in group_rows(batch).items():
            docs = self._docs.setdefault(version, np.zeros(self.n_clusters, dtype=np.int64))
            docs += np.bincount(labels[rows], minlength=self.n_clusters)
        lengths = np.diff(codes.indptr)
        flat = np.repeat(labels, lengths) * self.d_sae + codes.indices
        self._fired += np.bincount(flat, minlength=self._fired.size).reshape(self._fired.shape)

    def _learn(self, x: np.ndarray) -> None:
        if self._buffer is not None:
            take = x[: max(0, self.warmup - len(self._buffer))]
            self._buffer = np.concatenate([self._buffer, take])
            n = len(self._buffer)
            # Re-place centres when the buffer has doubled (and at its end): O(log warmup) runs.
            if n >= self.n_clusters and (n >= 2 * self._placed_at or n >= self.warmup):
                self._set_centres(_kmeans(self._buffer, self.n_clusters, self.seed))
                self._placed_at = n
            if len(self._buffer) >= self.warmup:
                self._buffer = None  # warm-up over: river takes it from here
            x = x[len(take):]
            first = self._seen + len(take)
        else:
            first = self._seen
        seq = np.arange(first, first + len(x))
        for row in x[(seq - self.warmup) % self.learn_every == 0]:
            self._model.learn_one(dict(enumerate(row.tolist())))

    def _set_centres(self, centres: np.ndarray) -> None:
        for c, centre in enumerate(np.asarray(centres, dtype=np.float64)):
            self._model.centers[c].update(enumerate(centre.tolist()))

    def describe(self, cluster: int, k: int = 5) -> list[int]:
        """The ``k`` features most over-represented in ``cluster`` (smoothed lift)."""
        docs = sum(d for d in self._docs.values())
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
            "seed": self.seed, "centres": self.centres(), "seen": self._seen,
            "buffer": self._buffer if self._buffer is not None else np.zeros((0, 0), np.float32),
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
                      self.learn_every, self.halflife, self.seed)
        self._set_centres(snapshot["centres"])
        self._seen = int(snapshot["seen"])
        buffer = np.asarray(snapshot["buffer"], dtype=np.float32)
        self._buffer = buffer.reshape(-1, self.dims) if buffer.size else None
        self._placed_at = 0 if self._buffer is None else len(self._buffer)
        if self._seen == 0:
            self._buffer = np.zeros((0, self.dims), dtype=np.float32)
        for name, docs in zip(snapshot["versions"], snapshot["docs"], strict=True):
            self._docs[version_from_str(name)] = np.array(docs, dtype=np.int64)
        self._fired[:] = snapshot["fired"]

    def merge(self, other: Self) -> None:
        if (other.d_sae, other.dims, other.seed) != (self.d_sae, self.dims, self.seed):
            raise IncompatibleStateError("clusterers differ in d_sae/dims/seed: cannot merge")
        target = self.assign(other.centres())
        for version, docs in other._docs.items():
            mine = self._docs.setdefault(version, np.zeros(self.n_clusters, dtype=np.int64))
            np.add.at(mine, target, docs)
        np.add.at(self._fired, target, other._fired)


LLOYD_ITERATIONS = 10  # enough to settle a k-means++ start on a few thousand points


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ seeding then Lloyd iterations; centres ``[k, dims]`` (seeded, deterministic)."""
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        total = d2.sum()
        pick = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
    c = np.array(centres, dtype=np.float64)
    for _ in range(LLOYD_ITERATIONS):
        labels = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(2), axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(0)
    return c
