"""Retrieval over the most recent events: a ring of events plus a chunked inverted index.

Every batch becomes one *chunk* of postings ``(feature, event sequence number, activation)`` sorted
by feature, so looking a feature up is a binary search per live chunk (an LSM-like layout: appends
are vectorised, nothing is deleted in place). A chunk is dropped once all its events have left the
ring. Only each event's ``max_features`` strongest features are indexed, which bounds the postings
to ``capacity * max_features`` per field whatever the codes' density.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Self

import numpy as np

from saewatch.models import TEXT_FIELDS, CooccurrenceCounts, FeatureBatch, RetrievalHit, TextField
from saewatch.state.base import StateComponent
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import event_times
from saewatch.state.ring_cooccurrence import count_cooccurrence, posting_matches, saturated_events

logger = logging.getLogger(__name__)


class _Chunk:
    """One batch's postings sorted by feature: 2-byte features and activations, and sequence
    numbers stored as small offsets from the chunk's first one (6-8 bytes per posting)."""

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


class _RingQueries:
    """Retrieval over a ring of events and its posting chunks; shared by the live index and
    its frozen copies, which hold the same attributes."""

    capacity: int
    max_features: int
    _seq: int
    _event_id: list[str]
    _versions: list[tuple[str, str]]
    _version: np.ndarray
    _time: np.ndarray
    _text: dict[TextField, list[str | None]]
    _chunks: dict[TextField, list[_Chunk]]

    def retrieve(
        self,
        features: Sequence[int],
        mode: Literal["and", "or"] = "or",
        model_id: str | None = None,
        model_version: str | None = None,
        field: TextField = "response",
        limit: int = 20,
    ) -> list[RetrievalHit]:
        """Recent events where the features fired (any for ``or``, all for ``and``)."""
        wanted = sorted(set(int(f) for f in features))
        if not wanted:
            return []
        seqs, feats, acts = self._postings(field, wanted)
        if len(seqs) == 0:
            return []
        uniq, inv = np.unique(seqs, return_inverse=True)
        score = np.bincount(inv, weights=acts)
        matched = np.bincount(inv)
        ok = matched == len(wanted) if mode == "and" else matched > 0
        if model_id is not None or model_version is not None:
            allowed = [i for i, (m, v) in enumerate(self._versions)
                       if model_id in (None, m) and model_version in (None, v)]
            ok &= np.isin(self._version[uniq % self.capacity], allowed)
        best = np.flatnonzero(ok)[np.lexsort((-uniq[ok], -score[ok]))][:limit]
        return [self._hit(int(uniq[b]), float(score[b]), feats[inv == b], field) for b in best]

    def cooccurrence(
        self,
        features: Sequence[int],
        model_id: str,
        versions: Sequence[str],
        field: TextField = "response",
    ) -> CooccurrenceCounts:
        """Per-version presence counts of ``features``, alone and in pairs, among the ring's
        events (:mod:`saewatch.state.ring_cooccurrence`).

        >>> from saewatch.state.testing import make_batch
        >>> index = RetrievalIndex(capacity=100)
        >>> index.update(make_batch([[1, 2], [1, 2], [3]], 4))
        >>> index.update(make_batch([[1], [2]], 4, version="v2", start=3))
        >>> c = index.cooccurrence([1, 2], "m", ["v1", "v2"])
        >>> c.n_documents.tolist(), c.joint[:, 0, 1].tolist(), c.any_present([1, 2]).tolist()
        ([3, 2], [2, 0], [2, 2])
        """
        wanted = list(dict.fromkeys(int(f) for f in features))
        names = list(dict.fromkeys(versions))
        # Ring version id -> position in names, -1 if not asked for; the extra last entry
        # answers the -1 of a never-written slot.
        where = np.array([names.index(v) if m == model_id and v in names else -1
                          for m, v in self._versions] + [-1], dtype=np.int64)
        oldest = max(0, self._seq - self.capacity)
        live = where[self._version[np.arange(oldest, self._seq) % self.capacity]]
        n_documents = np.bincount(live[live >= 0], minlength=len(names))
        seq, col = posting_matches(self._chunks[field], wanted, oldest)
        side = where[self._version[seq % self.capacity]]
        keep = side >= 0
        cut = where[self._version[saturated_events(self._chunks[field], self.max_features,
                                                   oldest) % self.capacity]]
        return count_cooccurrence(model_id, field, names, wanted, n_documents, seq[keep],
                                  side[keep], col[keep],
                                  np.bincount(cut[cut >= 0], minlength=len(names)))

    def _postings(self, field: TextField, wanted: list[int]) -> tuple[np.ndarray, ...]:
        oldest = self._seq - self.capacity
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for chunk in self._chunks[field]:
            for f in wanted:
                seq, act = chunk.lookup(f)
                live = seq >= oldest
                parts.append((seq[live], np.full(int(live.sum()), f), act[live]))
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def _hit(self, seq: int, score: float, feats: np.ndarray, field: TextField) -> RetrievalHit:
        pos = seq % self.capacity
        model_id, version = self._versions[self._version[pos]]
        return RetrievalHit(
            event_id=self._event_id[pos], model_id=model_id, model_version=version, field=field,
            timestamp=datetime.fromtimestamp(float(self._time[pos]), tz=UTC),
            score=round(score, 6), matched_features=tuple(sorted(int(f) for f in feats)),
            snippet=self._text[field][pos],
        )


class FrozenRetrieval(_RingQueries):
    """Read-only retrieval over a copy of a :class:`RetrievalIndex` (see its ``frozen``).

    The ring's arrays and lists are copied (the live ring overwrites them in place); the posting
    chunks are shared, since a chunk is never written after it is built: the live index only
    appends new ones and drops whole old ones.
    """

    __slots__ = ("capacity", "max_features", "_seq", "_event_id", "_versions", "_version",
                 "_time", "_text", "_chunks")

    def __init__(self, index: RetrievalIndex) -> None:
        self.capacity = index.capacity
        self.max_features = index.max_features
        self._seq = index._seq
        self._event_id = list(index._event_id)
        self._versions = list(index._versions)
        self._version = _read_only(index._version)
        self._time = _read_only(index._time)
        self._text = {f: list(index._text[f]) for f in TEXT_FIELDS}
        self._chunks = {f: list(index._chunks[f]) for f in TEXT_FIELDS}


class RetrievalIndex(StateComponent, _RingQueries):
    """Find recent events by SAE features (AND/OR), ranked by activation.

    Parameters
    ----------
    capacity
        Events kept (the most recent ones).
    max_features
        Strongest features indexed per event and field.
    store_snippets
        Keep truncated texts to show with hits (off for privacy: nothing is stored).
    snippet_chars
        Snippet length in characters.

    Examples
    --------
    >>> from saewatch.state.testing import make_batch
    >>> index = RetrievalIndex(capacity=100)
    >>> index.update(make_batch([[1, 2], [2], [3]], 4, values=[[0.5, 1.0], [3.0], [1.0]]))
    >>> [(h.event_id, h.score) for h in index.retrieve([2])]
    [('e1', 3.0), ('e0', 1.0)]
    >>> [h.event_id for h in index.retrieve([1, 2], mode="and")]
    ['e0']
    """

    def __init__(
        self,
        capacity: int = 100_000,
        max_features: int = 64,
        store_snippets: bool = True,
        snippet_chars: int = 280,
    ) -> None:
        self.capacity = capacity
        self.max_features = max_features
        self.store_snippets = store_snippets
        self.snippet_chars = snippet_chars
        self._seq = 0  # events ever added; the ring holds [seq - capacity, seq)
        self._event_id: list[str] = [""] * capacity
        # Versions as small ints into a table: 100k tuples would keep the cyclic GC busy.
        self._versions: list[tuple[str, str]] = []
        self._version_ids: dict[tuple[str, str], int] = {}
        self._version = np.full(capacity, -1, dtype=np.int32)
        self._time = np.zeros(capacity, dtype=np.float64)
        self._text: dict[TextField, list[str | None]] = {f: [None] * capacity for f in TEXT_FIELDS}
        self._chunks: dict[TextField, list[_Chunk]] = {f: [] for f in TEXT_FIELDS}

    def __len__(self) -> int:
        return min(self._seq, self.capacity)

    def update(self, batch: FeatureBatch) -> None:
        n = len(batch)
        seqs = np.arange(self._seq, self._seq + n, dtype=np.int64)
        kept = batch.events[-self.capacity:]
        first = (self._seq + n - len(kept)) % self.capacity
        _put(self._event_id, first, [e.event_id for e in kept])
        times = event_times(batch)[n - len(kept):]
        pos = (first + np.arange(len(kept))) % self.capacity
        self._time[pos] = times
        self._version[pos] = [self._version_id(e.model_id, e.model_version) for e in kept]
        for f in TEXT_FIELDS:
            chars = self.snippet_chars
            texts = ([e.text(f)[:chars] for e in kept] if self.store_snippets
                     else [None] * len(kept))
            _put(self._text[f], first, texts)
            codes = batch.codes(f)
            rows, feats, acts = _strongest(codes.indptr, codes.indices, codes.values,
                                           self.max_features)
            self._chunks[f].append(_Chunk(feats, seqs[rows], acts))
        self._seq += n
        self._expire()

    def _version_id(self, model_id: str, version: str) -> int:
        key = (model_id, version)
        found = self._version_ids.get(key)
        if found is None:
            found = self._version_ids[key] = len(self._versions)
            self._versions.append(key)
        return found

    def _expire(self) -> None:
        oldest = self._seq - self.capacity
        for f in TEXT_FIELDS:
            self._chunks[f] = [c for c in self._chunks[f] if c.last_seq >= oldest]

    def frozen(self) -> FrozenRetrieval:
        """A read-only copy of the ring's current contents, for a state view.

        >>> from saewatch.state.testing import make_batch
        >>> index = RetrievalIndex(capacity=2)
        >>> index.update(make_batch([[1], [1]], 4))
        >>> frozen = index.frozen()
        >>> index.update(make_batch([[1], [1]], 4, start=2))
        >>> sorted(h.event_id for h in frozen.retrieve([1])), len(index.retrieve([1]))
        (['e0', 'e1'], 2)
        """
        return FrozenRetrieval(self)

    def snapshot(self) -> dict[str, Any]:
        live = [(s, s % self.capacity) for s in range(max(0, self._seq - self.capacity), self._seq)]
        pos = [p for _s, p in live]
        out: dict[str, Any] = {
            "seq": self._seq,
            "event_id": [self._event_id[p] for p in pos],
            "version": [list(self._versions[self._version[p]]) for p in pos],
            "time": self._time[pos].copy() if pos else np.zeros(0),
            "text": {f: [self._text[f][p] for p in pos] for f in TEXT_FIELDS},
            "postings": {},
        }
        for f in TEXT_FIELDS:
            chunks = self._chunks[f]
            out["postings"][f] = {
                "sizes": np.array([len(c.offset) for c in chunks], dtype=np.int64),
                "features": _cat([c.features for c in chunks], np.int32),
                "seq": _cat([c.seq for c in chunks], np.int64),
                "act": _cat([c.act for c in chunks], np.float16),
            }
        return out

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(self.capacity, self.max_features, self.store_snippets,  # type: ignore[misc]
                      self.snippet_chars)
        self._seq = int(snapshot["seq"])
        first = self._seq - len(snapshot["event_id"])
        for i, event_id in enumerate(snapshot["event_id"]):
            pos = (first + i) % self.capacity
            self._event_id[pos] = event_id
            self._version[pos] = self._version_id(*snapshot["version"][i])
            self._time[pos] = snapshot["time"][i]
            for f in TEXT_FIELDS:
                text = snapshot["text"][f][i]
                self._text[f][pos] = text[: self.snippet_chars] if self.store_snippets else None
        for f in TEXT_FIELDS:
            post = snapshot["postings"][f]
            bounds = np.cumsum(post["sizes"])[:-1]
            for feats, seq, act in zip(np.split(post["features"], bounds),
                                       np.split(post["seq"], bounds),
                                       np.split(post["act"], bounds), strict=True):
                if len(seq):
                    self._chunks[f].append(_Chunk(feats, seq, act))
        self._expire()

    def merge(self, other: Self) -> None:
        """Append ``other``'s recent events after this one's (the ring then keeps the newest)."""
        if other.capacity != self.capacity or other.max_features != self.max_features:
            raise IncompatibleStateError("retrieval capacity/max_features differ: cannot merge")
        snap = other.snapshot()
        shift = self._seq - (other._seq - len(snap["event_id"]))
        mine = self.snapshot()
        merged = {**mine, "seq": self._seq + len(snap["event_id"])}
        for name in ("event_id", "version"):
            merged[name] = mine[name] + snap[name]
        merged["time"] = np.concatenate([mine["time"], snap["time"]])
        merged["text"] = {f: mine["text"][f] + snap["text"][f] for f in TEXT_FIELDS}
        merged["postings"] = {f: _concat_postings(mine["postings"][f], snap["postings"][f], shift)
                              for f in TEXT_FIELDS}
        self.restore(merged)


def _strongest(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, features and activations of each row's ``k`` strongest entries (vectorised).

    Rows are padded into one ``[n, longest]`` matrix and ``np.partition`` finds each row's k-th
    largest value in linear time; ties at the threshold may keep a few more than ``k``.
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


def _put(ring: list[Any], first: int, values: list[Any]) -> None:
    """Write ``values`` into ``ring`` from position ``first``, wrapping around (two slices)."""
    head = values[: len(ring) - first]
    ring[first:first + len(head)] = head
    ring[: len(values) - len(head)] = values[len(head):]


def _read_only(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flags.writeable = False
    return out


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _concat_postings(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], shift: int
) -> dict[str, np.ndarray]:
    return {"sizes": np.concatenate([a["sizes"], b["sizes"]]),
            "features": np.concatenate([a["features"], b["features"]]),
            "seq": np.concatenate([a["seq"], b["seq"] + shift]),
            "act": np.concatenate([a["act"], b["act"]])}
