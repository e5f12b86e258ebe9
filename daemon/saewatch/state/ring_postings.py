"""The retrieval ring's posting chunks: one per batch, each event's strongest features only.

A chunk holds one batch's postings ``(feature, event sequence number, activation)`` sorted by
feature, so a feature is one binary search per chunk; chunks are never written once built (the
ring appends new ones and drops whole old ones), which lets frozen copies share them.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


class Chunk:
    """One batch's postings sorted by feature: 2-byte features and activations, and sequence
    numbers stored as small offsets from the chunk's first one (6-8 bytes per posting).

    >>> c = Chunk(np.array([3, 1, 3]), np.array([10, 10, 12]), np.array([0.5, 1.0, 2.0]))
    >>> c.features.tolist(), c.seq.tolist(), c.per_event.tolist()
    ([1, 3, 3], [10, 10, 12], [2, 0, 1])
    >>> [a.tolist() for a in c.lookup(3)]
    [[10, 12], [0.5, 2.0]]
    """

    __slots__ = ("features", "offset", "base", "act", "last_seq", "per_event")

    def __init__(self, features: np.ndarray, seq: np.ndarray, act: np.ndarray) -> None:
        # Feature ids below 2**16 sort as uint16, for which numpy's stable sort is a radix sort.
        if len(features) and int(features.max()) < 2**16:
            features = features.astype(np.uint16)
        order = np.argsort(features, kind="stable")
        self.base = int(seq.min()) if len(seq) else 0
        self.last_seq = int(seq.max()) if len(seq) else -1
        small = np.uint16 if self.last_seq - self.base < 2**16 else np.uint32
        self.features, self.act = features[order], act[order]
        self.offset = (seq[order] - self.base).astype(small)
        # Postings per event: one that reached max_features may have had more features present.
        self.per_event = np.bincount(self.offset).astype(np.uint16)  # <= max_features (4,096)
        # Frozen copies of the index share chunks (RetrievalIndex.frozen): never write one.
        for a in (self.features, self.act, self.offset, self.per_event):
            a.flags.writeable = False

    @property
    def seq(self) -> np.ndarray:
        return self.offset.astype(np.int64) + self.base

    def lookup(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.searchsorted(self.features, np.array([feature, feature + 1], dtype=np.int64))
        return self.offset[lo:hi].astype(np.int64) + self.base, self.act[lo:hi]


def strongest(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, features and activations of each row's ``k`` strongest entries (vectorised).

    Rows are padded into one ``[n, longest]`` matrix and ``np.partition`` finds each row's k-th
    largest value in linear time; ties at the threshold may keep a few more than ``k``.

    >>> rows, feats, acts = strongest(np.array([0, 3, 4]), np.array([1, 2, 3, 9]),
    ...                               np.array([0.1, 0.9, 0.5, 0.2], dtype=np.float16), 2)
    >>> rows.tolist(), feats.tolist()
    ([0, 0, 1], [2, 3, 9])
    """
    lengths = np.diff(indptr)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    vals = values.astype(np.float32)
    if len(lengths) == 0 or lengths.max() <= k:
        return rows, indices.astype(np.int32), values.astype(np.float16)
    col = np.arange(len(indices)) - np.repeat(indptr[:-1], lengths)
    padded = np.full((len(lengths), int(lengths.max())), -np.inf, dtype=np.float32)
    padded[rows, col] = vals
    kth = -np.partition(-padded, k - 1, axis=1)[:, k - 1]
    keep = vals >= kth[rows]
    return rows[keep], indices[keep].astype(np.int32), values[keep].astype(np.float16)
