"""Retrieval over the most recent events: a ring of events plus a chunked inverted index.

Every batch becomes one *chunk* of postings ``(feature, event sequence number, activation)`` sorted
by feature, so looking a feature up is a binary search per live chunk (an LSM-like layout: appends
are vectorised, nothing is deleted in place). A chunk is dropped once all its events have left the
ring. Only each event's ``max_features`` strongest features are indexed, which bounds the postings
to ``capacity * max_features`` per field whatever the codes' density. Each event's token count
per field is kept beside it, for presence by length stratum (:mod:`saewatch.state.ring_length`);
the snapshot layout and merge are in :mod:`saewatch.state.ring_snapshot`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Self

import numpy as np

from saewatch.models import (
    TEXT_FIELDS,
    CooccurrenceCounts,
    FeatureBatch,
    LengthStrata,
    RetrievalHit,
    TextField,
)
from saewatch.state.base import StateComponent
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import event_times
from saewatch.state.ring_cooccurrence import count_cooccurrence, posting_matches, saturated_events
from saewatch.state.ring_length import UNKNOWN_TOKENS, count_length_strata
from saewatch.state.ring_postings import Chunk as _Chunk
from saewatch.state.ring_postings import strongest as _strongest
from saewatch.state.ring_snapshot import (
    merge_snapshots,
    ring_snapshot,
    snapshot_chunks,
    snapshot_tokens,
)

logger = logging.getLogger(__name__)


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
    _tokens: dict[TextField, np.ndarray]  # int32[capacity] per field; -1 unknown
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
        where = self._where(model_id, names)
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

    def length_strata(
        self,
        features: Sequence[int],
        model_id: str,
        versions: Sequence[str],
        edges: Sequence[int],
        field: TextField = "response",
    ) -> LengthStrata:
        """Per version and token-length stratum (``edges[s - 1] <= tokens < edges[s]``), the
        ring's documents and those with each of ``features`` (:mod:`saewatch.state.ring_length`).

        >>> from saewatch.state.testing import make_batch
        >>> index = RetrievalIndex(capacity=100)
        >>> index.update(make_batch([[1], [1], []], 4, n_tokens=[5, 50, 60]))
        >>> index.update(make_batch([[1], []], 4, version="v2", start=3, n_tokens=[4, 70]))
        >>> s = index.length_strata([1], "m", ["v1", "v2"], edges=[10])
        >>> s.n_documents.tolist(), s.present[:, :, 0].tolist()
        ([[1, 2], [1, 1]], [[1, 1], [1, 0]])
        """
        wanted = list(dict.fromkeys(int(f) for f in features))
        names = list(dict.fromkeys(versions))
        oldest = max(0, self._seq - self.capacity)
        pos = np.arange(oldest, self._seq) % self.capacity
        seq, col = (posting_matches(self._chunks[field], wanted, oldest) if wanted
                    else (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        return count_length_strata(
            model_id, field, names, wanted, edges, self._where(model_id, names)[self._version[pos]],
            self._tokens[field][pos], seq, col,
            saturated_events(self._chunks[field], self.max_features, oldest), oldest)

    def _where(self, model_id: str, names: list[str]) -> np.ndarray:
        """Ring version id -> position in ``names``, -1 if not asked for; the extra last entry
        answers the -1 of a never-written slot."""
        return np.array([names.index(v) if m == model_id and v in names else -1
                         for m, v in self._versions] + [-1], dtype=np.int64)

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
                 "_time", "_text", "_tokens", "_chunks")

    def __init__(self, index: RetrievalIndex) -> None:
        self.capacity = index.capacity
        self.max_features = index.max_features
        self._seq = index._seq
        self._event_id = list(index._event_id)
        self._versions = list(index._versions)
        self._version = _read_only(index._version)
        self._time = _read_only(index._time)
        self._text = {f: list(index._text[f]) for f in TEXT_FIELDS}
        self._tokens = {f: _read_only(index._tokens[f]) for f in TEXT_FIELDS}
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
        self._tokens = {f: np.full(capacity, UNKNOWN_TOKENS, dtype=np.int32) for f in TEXT_FIELDS}
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
            self._tokens[f][pos] = codes.n_tokens[n - len(kept):]
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
        pos = [s % self.capacity for s in range(max(0, self._seq - self.capacity), self._seq)]
        return ring_snapshot(self._seq, pos, self._event_id, self._versions, self._version,
                             self._time, self._text, self._tokens, self._chunks)

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(self.capacity, self.max_features, self.store_snippets,  # type: ignore[misc]
                      self.snippet_chars)
        self._seq = int(snapshot["seq"])
        first = self._seq - len(snapshot["event_id"])
        pos = (first + np.arange(len(snapshot["event_id"]))) % self.capacity
        for i, event_id in enumerate(snapshot["event_id"]):
            p = int(pos[i])
            self._event_id[p] = event_id
            self._version[p] = self._version_id(*snapshot["version"][i])
            self._time[p] = snapshot["time"][i]
            for f in TEXT_FIELDS:
                text = snapshot["text"][f][i]
                self._text[f][p] = text[: self.snippet_chars] if self.store_snippets else None
        for f in TEXT_FIELDS:
            self._tokens[f][pos] = snapshot_tokens(snapshot, f)
            self._chunks[f] += [_Chunk(*parts) for parts in snapshot_chunks(snapshot, f)]
        self._expire()

    def merge(self, other: Self) -> None:
        """Append ``other``'s recent events after this one's (the ring then keeps the newest)."""
        if other.capacity != self.capacity or other.max_features != self.max_features:
            raise IncompatibleStateError("retrieval capacity/max_features differ: cannot merge")
        self.restore(merge_snapshots(self.snapshot(), other.snapshot()))


def _put(ring: list[Any], first: int, values: list[Any]) -> None:
    """Write ``values`` into ``ring`` from position ``first``, wrapping around (two slices)."""
    head = values[: len(ring) - first]
    ring[first:first + len(head)] = head
    ring[: len(values) - len(head)] = values[len(head):]


def _read_only(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flags.writeable = False
    return out
