"""Per-feature top-k example reservoirs: the most strongly activating snippets per version.

A deterministic "reservoir" by activation (not a random sample): what a person reads to understand
a feature is its strongest examples. Per (model_id, model_version, field) two ``[d_sae, k]``
arrays hold the k best activations and *handles* of their events. A batch is screened against each
feature's current k-th best in one vectorised comparison, and the survivors are merged into the
touched rows with one row-wise sort, so no Python loop runs per feature. Texts are stored once per
event handle and unreferenced ones are garbage-collected when the table has doubled.

Each kept (event, feature) pair also keeps the feature's top-activating window in the text, its
firing tokens marked (:class:`~saewatch.models.PeakWindow`), where the batch carries windows
(:attr:`FeatureBatch.response_windows`): at most one per reservoir slot, so at most
``d_sae * k`` per (model_id, version, field), each ~24 tokens of text and their marks (~300
bytes); windows of pairs that left the reservoirs are collected with the texts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from saewatch.models import MARK_DTYPE, TEXT_FIELDS, FeatureBatch, PeakWindow, Snippet, TextField
from saewatch.state.base import StateComponent
from saewatch.state.counts import select_rows
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import StateKey, group_rows, key_from_str, key_to_str

logger = logging.getLogger(__name__)

GC_SLACK = 4_096  # texts kept beyond twice the live ones before a collection runs


class _Reservoir:
    __slots__ = ("act", "handle", "floor")

    def __init__(self, d_sae: int, k: int) -> None:
        self.act = np.full((d_sae, k), -np.inf, dtype=np.float32)
        self.handle = np.full((d_sae, k), -1, dtype=np.int64)
        self.floor = np.full(d_sae, -np.inf, dtype=np.float32)  # k-th best per feature

    def offer(self, feat: np.ndarray, act: np.ndarray, handle: np.ndarray) -> np.ndarray:
        """Merge candidate ``(feature, activation, handle)`` triples into the top-k rows.

        Returns the touched rows (features): their handles are a superset of the ones inserted.
        """
        keep = act > self.floor[feat]
        if not keep.any():
            return np.zeros(0, dtype=np.int64)
        feat, act, handle = feat[keep], act[keep].astype(np.float32), handle[keep]
        order = np.lexsort((-act, feat))
        feat, act, handle = feat[order], act[order], handle[order]
        rows, start, counts = np.unique(feat, return_index=True, return_counts=True)
        k = self.act.shape[1]
        rank = np.arange(len(feat)) - np.repeat(start, counts)
        row_of = np.repeat(np.arange(len(rows)), counts)
        best = rank < k
        cand_act = np.full((len(rows), k), -np.inf, dtype=np.float32)
        cand_h = np.full((len(rows), k), -1, dtype=np.int64)
        cand_act[row_of[best], rank[best]] = act[best]
        cand_h[row_of[best], rank[best]] = handle[best]
        all_act = np.hstack([self.act[rows], cand_act])
        all_h = np.hstack([self.handle[rows], cand_h])
        top = np.argsort(-all_act, axis=1, kind="stable")[:, :k]
        self.act[rows] = np.take_along_axis(all_act, top, axis=1)
        self.handle[rows] = np.take_along_axis(all_h, top, axis=1)
        self.floor[rows] = self.act[rows].min(axis=1)
        touched: np.ndarray = rows
        return touched


class ExampleReservoirs(StateComponent):
    """Top-k most strongly activating examples per feature, version and field.

    Parameters
    ----------
    d_sae
        Number of SAE features.
    k
        Examples kept per feature and (model_id, model_version, field).
    store_snippets
        Keep truncated texts; when off only event ids and activations are kept.
    snippet_chars
        Snippet length in characters.

    Examples
    --------
    >>> from saewatch.state.testing import make_batch
    >>> ex = ExampleReservoirs(d_sae=4, k=2)
    >>> ex.update(make_batch([[1], [1], [1]], 4, values=[[0.5], [2.0], [1.0]]))
    >>> [(s.event_id, s.activation) for s in ex.examples(1, "m", "v1", "response")]
    [('e1', 2.0), ('e2', 1.0)]
    """

    def __init__(
        self, d_sae: int, k: int = 5, store_snippets: bool = True, snippet_chars: int = 280
    ) -> None:
        self.d_sae = d_sae
        self.k = k
        self.store_snippets = store_snippets
        self.snippet_chars = snippet_chars
        self._res: dict[StateKey, _Reservoir] = {}
        self._next_handle = 0
        self._texts: dict[int, tuple[str, dict[str, str]]] = {}  # handle -> (event id, texts)
        self._windows: dict[int, PeakWindow] = {}  # window_key(handle, field, feature) -> window
        self._live_after_gc = 0
        self._windows_after_gc = 0

    def update(self, batch: FeatureBatch) -> None:
        base = self._next_handle
        self._next_handle += len(batch)
        held: list[np.ndarray] = []
        for (model_id, version), rows in group_rows(batch).items():
            for field in TEXT_FIELDS:
                res = self._res.setdefault((model_id, version, field),
                                           _Reservoir(self.d_sae, self.k))
                codes = batch.codes(field)
                feat, act = select_rows(codes.indptr, codes.indices, codes.values, rows)
                doc = np.repeat(rows, np.diff(codes.indptr)[rows])
                touched = res.offer(feat, act, base + doc)
                held.append(res.handle[touched].ravel())
                self._keep_windows(batch, field, base, touched, res.handle[touched])
        self._register(batch, base, np.concatenate(held) if held else np.zeros(0, np.int64))

    def _keep_windows(self, batch: FeatureBatch, field: TextField, base: int,
                      features: np.ndarray, handles: np.ndarray) -> None:
        """Keep the peak windows of the pairs this batch just put into the reservoirs."""
        windows = batch.windows(field)
        if windows is None or not self.store_snippets:
            return
        fresh = handles >= base
        for f, h in zip(np.repeat(features, fresh.sum(axis=1)).tolist(),
                        handles[fresh].tolist(), strict=True):
            found = windows.window(h - base, f, batch.events[h - base].text(field))
            if found is not None:
                self._windows[int(window_key(h, field, f, self.d_sae))] = found

    def _register(self, batch: FeatureBatch, base: int, held: np.ndarray) -> None:
        """Store texts of this batch's events that made it into some reservoir."""
        for h in np.unique(held[held >= base]).tolist():
            event = batch.events[h - base]
            texts: dict[str, str] = (
                {f: event.text(f)[: self.snippet_chars] for f in TEXT_FIELDS}
                if self.store_snippets else {})
            self._texts[h] = (event.event_id, texts)
        if (len(self._texts) > 2 * self._live_after_gc + GC_SLACK
                or len(self._windows) > 2 * self._windows_after_gc + GC_SLACK):
            self._collect()

    def _collect(self) -> None:
        live = set(np.unique(np.concatenate(
            [r.handle.ravel() for r in self._res.values()] or [np.zeros(0, np.int64)])).tolist())
        self._texts = {h: t for h, t in self._texts.items() if h in live}
        self._live_after_gc = len(self._texts)
        if self._windows:
            slots = [window_key(r.handle[r.handle >= 0], key[2],
                                np.nonzero(r.handle >= 0)[0], self.d_sae)
                     for key, r in self._res.items()]
            held = set(np.concatenate(slots).tolist()) if slots else set()
            self._windows = {c: w for c, w in self._windows.items() if c in held}
        self._windows_after_gc = len(self._windows)

    def examples(
        self, feature: int, model_id: str, model_version: str, field: TextField, k: int | None = None
    ) -> list[Snippet]:
        """The strongest examples of ``feature``, best first (text empty if snippets are off)."""
        res = self._res.get((model_id, model_version, field))
        if res is None or not 0 <= feature < self.d_sae:
            return []
        return _snippets(res.act[feature], res.handle[feature], self._texts, model_version, field,
                         min(k or self.k, self.k), _Windows(self._windows, feature, self.d_sae))

    def frozen(self) -> FrozenExamples:
        """A detached read-only copy of the reservoirs, for a state view.

        >>> from saewatch.state.testing import make_batch
        >>> ex = ExampleReservoirs(d_sae=4, k=2)
        >>> ex.update(make_batch([[1], [1]], 4, values=[[0.5], [2.0]]))
        >>> frozen = ex.frozen()
        >>> ex.update(make_batch([[1]], 4, values=[[9.0]], start=2))
        >>> [s.event_id for s in frozen.examples(1, "m", "v1", "response")]
        ['e1', 'e0']
        """
        # The text table is copied shallowly: its entries are never changed once written.
        return FrozenExamples(self.d_sae, self.k, {key: (_read_only(r.act), _read_only(r.handle))
                                                   for key, r in self._res.items()},
                              dict(self._texts), dict(self._windows))

    def snapshot(self) -> dict[str, Any]:
        self._collect()
        keys = sorted(self._res)
        handles = sorted(self._texts)
        return {
            "d_sae": self.d_sae, "k": self.k, "next_handle": self._next_handle,
            "keys": [key_to_str(k) for k in keys],
            "act": _stack([self._res[k].act for k in keys], (0, self.d_sae, self.k), np.float32),
            "handle": _stack([self._res[k].handle for k in keys], (0, self.d_sae, self.k),
                             np.int64),
            "text_handles": np.array(handles, dtype=np.int64),
            "event_ids": [self._texts[h][0] for h in handles],
            "texts": {f: [self._texts[h][1].get(f, "") for h in handles] for f in TEXT_FIELDS},
            "windows": _windows_snapshot(self._windows),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(int(snapshot["d_sae"]), int(snapshot["k"]),  # type: ignore[misc]
                      self.store_snippets, self.snippet_chars)
        self._next_handle = int(snapshot["next_handle"])
        for i, name in enumerate(snapshot["keys"]):
            res = self._res[key_from_str(name)] = _Reservoir(self.d_sae, self.k)
            res.act[:] = snapshot["act"][i]
            res.handle[:] = snapshot["handle"][i]
            res.floor[:] = res.act.min(axis=1)
        for j, h in enumerate(np.asarray(snapshot["text_handles"]).tolist()):
            texts: dict[str, str] = (
                {f: snapshot["texts"][f][j][: self.snippet_chars] for f in TEXT_FIELDS}
                if self.store_snippets else {})
            self._texts[h] = (snapshot["event_ids"][j], texts)
        self._live_after_gc = len(self._texts)
        if self.store_snippets and "windows" in snapshot:  # older snapshots have none
            self._windows = _windows_restored(snapshot["windows"])
        self._windows_after_gc = len(self._windows)

    def merge(self, other: Self) -> None:
        """Keep the k strongest of both sides per feature (the union's top-k, exact)."""
        if (other.d_sae, other.k) != (self.d_sae, self.k):
            raise IncompatibleStateError("example reservoirs differ in d_sae or k: cannot merge")
        shift = self._next_handle  # other's handles move past ours, so they cannot collide
        for key, theirs in other._res.items():
            mine = self._res.setdefault(key, _Reservoir(self.d_sae, self.k))
            ok = theirs.handle >= 0
            feat = np.nonzero(ok)[0]
            mine.offer(feat, theirs.act[ok], theirs.handle[ok] + shift)
        self._texts.update({h + shift: t for h, t in other._texts.items()})
        moved = shift * len(TEXT_FIELDS) * self.d_sae  # window_key's handle moves by shift
        self._windows.update({c + moved: w for c, w in other._windows.items()})
        self._next_handle += other._next_handle
        self._collect()


class FrozenExamples:
    """Read-only top-k examples over copies of the reservoirs (see :meth:`ExampleReservoirs.frozen`).

    Parameters
    ----------
    d_sae, k
        As the reservoirs they were copied from.
    reservoirs
        Per (model_id, model_version, field): activations and event handles, ``[d_sae, k]``.
    texts
        Event handle -> (event id, snippet per field).
    windows
        :func:`window_key` -> the pair's peak window.
    """

    __slots__ = ("d_sae", "k", "_res", "_texts", "_windows")

    def __init__(
        self, d_sae: int, k: int, reservoirs: dict[StateKey, tuple[np.ndarray, np.ndarray]],
        texts: dict[int, tuple[str, dict[str, str]]],
        windows: dict[int, PeakWindow] | None = None,
    ) -> None:
        self.d_sae = d_sae
        self.k = k
        self._res = reservoirs
        self._texts = texts
        self._windows = windows or {}

    def examples(
        self, feature: int, model_id: str, model_version: str, field: TextField, k: int | None = None
    ) -> list[Snippet]:
        """The strongest examples of ``feature``, best first (text empty if snippets are off)."""
        res = self._res.get((model_id, model_version, field))
        if res is None or not 0 <= feature < self.d_sae:
            return []
        act, handle = res
        return _snippets(act[feature], handle[feature], self._texts, model_version, field,
                         min(k or self.k, self.k), _Windows(self._windows, feature, self.d_sae))


def window_key(handle: int | np.ndarray, field: str, feature: int | np.ndarray,
               d_sae: int) -> np.ndarray:
    """One int64 per (event handle, field, feature): where the pair's window is filed.

    >>> window_key(np.array([0, 2]), "response", np.array([3, 1]), 4).tolist()
    [7, 21]
    """
    f = TEXT_FIELDS.index(field)
    key: np.ndarray = (np.asarray(handle, np.int64) * len(TEXT_FIELDS) + f) * d_sae + np.asarray(
        feature, np.int64)
    return key


class _Windows:
    """The windows of one feature's slots (a lookup into the store's table)."""

    __slots__ = ("table", "feature", "d_sae")

    def __init__(self, table: Mapping[int, PeakWindow], feature: int, d_sae: int) -> None:
        self.table, self.feature, self.d_sae = table, feature, d_sae

    def get(self, handle: int, field: TextField) -> PeakWindow | None:
        return self.table.get(int(window_key(handle, field, self.feature, self.d_sae)))


def _snippets(
    act: np.ndarray, handle: np.ndarray, texts: Mapping[int, tuple[str, dict[str, str]]],
    model_version: str, field: TextField, k: int, windows: _Windows,
) -> list[Snippet]:
    """Snippets of one feature's reservoir row (slots are sorted best first, -1 = empty)."""
    out = []
    for slot in range(k):
        h = int(handle[slot])
        if h < 0:
            break
        event_id, text = texts[h]
        window = windows.get(h, field)
        out.append(Snippet(event_id=event_id, model_version=model_version,
                           activation=round(float(act[slot]), 4), text=text.get(field, ""),
                           window=None if window is None else window.to_model()))
    return out


def _windows_snapshot(windows: Mapping[int, PeakWindow]) -> dict[str, Any]:
    """The window table as arrays and a list of texts (no pickling)."""
    keys = sorted(windows)
    marks = [windows[c].marks for c in keys]
    flat = np.concatenate(marks) if marks else np.zeros(0, MARK_DTYPE)
    return {"keys": np.array(keys, dtype=np.int64), "texts": [windows[c].text for c in keys],
            "offsets": np.array([windows[c].offset for c in keys], dtype=np.int64),
            "marks": np.array([len(m) for m in marks], dtype=np.int64),
            "start": flat["start"].copy(), "end": flat["end"].copy(), "act": flat["act"].copy()}


def _windows_restored(snap: Mapping[str, Any]) -> dict[int, PeakWindow]:
    ends = np.cumsum(np.asarray(snap["marks"], dtype=np.int64))
    flat = np.zeros(int(ends[-1]) if len(ends) else 0, MARK_DTYPE)
    for name in ("start", "end", "act"):
        flat[name] = snap[name]
    flat.flags.writeable = False
    out = {}
    for i, c in enumerate(np.asarray(snap["keys"]).tolist()):
        lo = int(ends[i - 1]) if i else 0
        out[c] = PeakWindow(text=snap["texts"][i], offset=int(snap["offsets"][i]),
                            marks=flat[lo : int(ends[i])])
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flags.writeable = False
    return out


def _stack(arrays: list[np.ndarray], empty: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.stack(arrays) if arrays else np.zeros(empty, dtype=dtype)
