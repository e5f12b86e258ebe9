"""The retrieval ring's persistent form: the snapshot layout, its merge, and reading it back.

A snapshot lists the ring's live events oldest first (ids, versions, times, snippets, and each
field's token count) and, per field, every live chunk's postings concatenated (``sizes`` splits
them again). Two snapshots merge by appending the second's events after the first's, sequence
numbers shifted to follow on; the ring that restores the result keeps the newest.
Snapshots written before the ring kept token counts restore them as
:data:`~saewatch.state.ring_length.UNKNOWN_TOKENS`: those events stay in no length stratum.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from saewatch.models import TEXT_FIELDS, TextField
from saewatch.state.ring_length import UNKNOWN_TOKENS

logger = logging.getLogger(__name__)


class _SnapshotChunk(Protocol):
    """What a snapshot reads of a posting chunk."""

    features: np.ndarray
    offset: np.ndarray
    act: np.ndarray

    @property
    def seq(self) -> np.ndarray: ...


def ring_snapshot(
    seq: int, pos: Sequence[int], event_id: Sequence[str], versions: Sequence[tuple[str, str]],
    version: np.ndarray, time: np.ndarray, text: Mapping[TextField, Sequence[str | None]],
    tokens: Mapping[TextField, np.ndarray], chunks: Mapping[TextField, Sequence[_SnapshotChunk]],
) -> dict[str, Any]:
    """The snapshot of a ring whose live events sit at ring positions ``pos``, oldest first.

    >>> from saewatch.state.ring_postings import Chunk
    >>> chunk = Chunk(np.array([4]), np.array([1]), np.array([0.5]))
    >>> snap = ring_snapshot(2, [1], ["e0", "e1"], [("m", "v1")], np.array([0, 0]),
    ...     np.zeros(2), {"prompt": ["p0", "p1"], "response": ["r0", "r1"]},
    ...     {"prompt": np.array([3, 4]), "response": np.array([7, 8])},
    ...     {"prompt": [], "response": [chunk]})
    >>> snap["event_id"], snap["tokens"]["response"].tolist(), snap["postings"]["response"]["seq"]
    (['e1'], [8], array([1]))
    >>> [seq.tolist() for _f, seq, _a in snapshot_chunks(snap, "response")]
    [[1]]
    """
    out: dict[str, Any] = {
        "seq": seq,
        "event_id": [event_id[p] for p in pos],
        "version": [list(versions[version[p]]) for p in pos],
        "time": time[list(pos)].copy() if len(pos) else np.zeros(0),
        "text": {f: [text[f][p] for p in pos] for f in TEXT_FIELDS},
        "tokens": {f: tokens[f][list(pos)].astype(np.int32) if len(pos) else
                   np.zeros(0, np.int32) for f in TEXT_FIELDS},
        "postings": {},
    }
    for f in TEXT_FIELDS:
        out["postings"][f] = {
            "sizes": np.array([len(c.offset) for c in chunks[f]], dtype=np.int64),
            "features": _cat([c.features for c in chunks[f]], np.int32),
            "seq": _cat([c.seq for c in chunks[f]], np.int64),
            "act": _cat([c.act for c in chunks[f]], np.float16),
        }
    return out


def snapshot_tokens(snapshot: Mapping[str, Any], field: TextField) -> np.ndarray:
    """Token counts of the snapshot's events in ``field`` (unknown in an older snapshot).

    >>> snapshot_tokens({"event_id": ["a", "b"]}, "response").tolist()
    [-1, -1]
    >>> snapshot_tokens({"event_id": ["a"], "tokens": {"response": [12]}}, "response").tolist()
    [12]
    """
    n = len(snapshot["event_id"])
    stored = snapshot.get("tokens", {}).get(field)
    if stored is None:
        return np.full(n, UNKNOWN_TOKENS, dtype=np.int32)
    return np.asarray(stored, dtype=np.int32)


def snapshot_chunks(
    snapshot: Mapping[str, Any], field: TextField
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Features, sequence numbers and activations of each non-empty chunk of ``field`` (see
    :func:`ring_snapshot`)."""
    post = snapshot["postings"][field]
    bounds = np.cumsum(post["sizes"])[:-1]
    for feats, seq, act in zip(np.split(post["features"], bounds), np.split(post["seq"], bounds),
                               np.split(post["act"], bounds), strict=True):
        if len(seq):
            yield feats, seq, act


def merge_snapshots(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """One snapshot of ``mine``'s events followed by ``theirs``' (renumbered to follow on).

    >>> a = {"seq": 5, "event_id": ["e3", "e4"], "version": [["m", "v"]] * 2,
    ...      "time": np.zeros(2), "text": {"prompt": [None] * 2, "response": [None] * 2},
    ...      "postings": {f: {"sizes": np.zeros(0, np.int64), "features": np.zeros(0, np.int32),
    ...                       "seq": np.zeros(0, np.int64), "act": np.zeros(0, np.float16)}
    ...                   for f in ("prompt", "response")}}
    >>> b = {**a, "seq": 1, "event_id": ["x0"], "version": [["m", "v"]], "time": np.zeros(1),
    ...      "text": {"prompt": [None], "response": [None]},
    ...      "tokens": {"prompt": np.array([3]), "response": np.array([9])}}
    >>> m = merge_snapshots(a, b)
    >>> m["seq"], m["event_id"], m["tokens"]["response"].tolist()
    (6, ['e3', 'e4', 'x0'], [-1, -1, 9])
    """
    shift = int(mine["seq"]) - (int(theirs["seq"]) - len(theirs["event_id"]))
    merged = {**mine, "seq": int(mine["seq"]) + len(theirs["event_id"])}
    for name in ("event_id", "version"):
        merged[name] = list(mine[name]) + list(theirs[name])
    merged["time"] = np.concatenate([mine["time"], theirs["time"]])
    merged["text"] = {f: list(mine["text"][f]) + list(theirs["text"][f]) for f in TEXT_FIELDS}
    merged["tokens"] = {f: np.concatenate([snapshot_tokens(mine, f), snapshot_tokens(theirs, f)])
                        for f in TEXT_FIELDS}
    merged["postings"] = {f: _concat_postings(mine["postings"][f], theirs["postings"][f], shift)
                          for f in TEXT_FIELDS}
    return merged


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _concat_postings(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], shift: int
) -> dict[str, np.ndarray]:
    return {"sizes": np.concatenate([a["sizes"], b["sizes"]]),
            "features": np.concatenate([a["features"], b["features"]]),
            "seq": np.concatenate([a["seq"], b["seq"] + shift]),
            "act": np.concatenate([a["act"], b["act"]])}
