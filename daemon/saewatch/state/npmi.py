"""NPMI arithmetic and the (metadata value × tracked feature) co-occurrence table.

``npmi(x, y) = log(p(x, y) / (p(x) p(y))) / -log p(x, y)``: +1 when x and y always occur together,
0 when independent, -1 when they never co-occur.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from saewatch.models import TEXT_FIELDS

logger = logging.getLogger(__name__)


def npmi(
    joint: Any, joint_n: Any, a: Any, a_n: Any, b: Any, b_n: Any
) -> np.ndarray:
    """Normalised PMI from counts and their exposures (documents observed), broadcasting.

    >>> float(npmi(2, 4, 2, 4, 2, 4))  # always together
    1.0
    >>> round(float(npmi(1, 4, 2, 4, 2, 4)), 6)  # independent: p = 1/4 = 1/2 * 1/2
    0.0
    >>> float(npmi(0, 4, 2, 4, 2, 4))
    -1.0
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        p_ab = np.asarray(joint, dtype=np.float64) / np.asarray(joint_n, dtype=np.float64)
        p_a = np.asarray(a, dtype=np.float64) / np.asarray(a_n, dtype=np.float64)
        p_b = np.asarray(b, dtype=np.float64) / np.asarray(b_n, dtype=np.float64)
        pmi = np.log(p_ab) - np.log(p_a) - np.log(p_b)
        out = pmi / -np.log(p_ab)
    out = np.where(p_ab >= 1.0, 1.0, out)
    out = np.where(p_ab <= 0.0, -1.0, out)
    return np.clip(np.nan_to_num(out, nan=0.0), -1.0, 1.0)


class MetadataTable:
    """Counts of documents per ``key=value`` metadata entry and tracked feature slot.

    ``C[m, s]``: documents with entry ``m`` where slot ``s`` fired; ``D[m, s]``: documents with entry
    ``m`` observed while slot ``s`` was tracked. Entries beyond ``max_values`` are ignored (and
    counted in ``overflow``), which bounds memory to ``max_values * n_slots`` per field.

    Examples
    --------
    >>> t = MetadataTable(max_values=4, n_slots=2)
    >>> hot = {"prompt": np.zeros((2, 2), np.float32), "response": np.eye(2, dtype=np.float32)}
    >>> t.update([{"tenant": "a"}, {"tenant": "b"}], hot)
    >>> t.values, int(t.counts("response")[0, 0])
    (['tenant=a', 'tenant=b'], 1)
    """

    def __init__(self, max_values: int, n_slots: int) -> None:
        self.max_values = max_values
        self.n_slots = n_slots
        self.values: list[str] = []
        self.overflow = 0
        self._index: dict[str, int] = {}
        self._c: dict[str, np.ndarray] = {
            f: np.zeros((max_values, n_slots), dtype=np.int64) for f in TEXT_FIELDS}
        self._d: dict[str, np.ndarray] = {
            f: np.zeros((max_values, n_slots), dtype=np.int64) for f in TEXT_FIELDS}

    def counts(self, field: str) -> np.ndarray:
        return self._c[field][: len(self.values)]

    def _entry(self, key: str, value: str) -> int:
        name = f"{key}={value}"
        i = self._index.get(name)
        if i is None and len(self.values) < self.max_values:
            i = self._index[name] = len(self.values)
            self.values.append(name)
        if i is None:
            self.overflow += 1
            return -1
        return i

    def update(self, metadata: Sequence[Mapping[str, str]], onehot: Mapping[str, np.ndarray]) -> None:
        # Events share a handful of distinct metadata dicts: each distinct one is looked up
        # once (in first-seen order, so entries get the numbers one lookup per event would
        # give them), and its overflowing entries still count once per event.
        known: dict[tuple[tuple[str, str], ...], tuple[list[int], int]] = {}
        docs: list[int] = []
        entries: list[int] = []
        for d, md in enumerate(metadata):
            if not md:
                continue
            items = tuple(md.items())
            found = known.get(items)
            if found is None:
                ids = [self._entry(k, v) for k, v in items]
                found = known[items] = ([i for i in ids if i >= 0], ids.count(-1))
            else:
                self.overflow += found[1]
            docs += [d] * len(found[0])
            entries += found[0]
        if not entries:
            return
        used, column = np.unique(entries, return_inverse=True)  # only the entries in this batch
        mv = np.zeros((len(metadata), len(used)), dtype=np.float32)
        mv[docs, column] = 1.0
        per_entry = np.bincount(column, minlength=len(used))[:, None]
        for f in TEXT_FIELDS:
            self._c[f][used] += np.rint(mv.T @ onehot[f]).astype(np.int64)
            self._d[f][used] += per_entry

    def reset_slots(self, field: str, slots: np.ndarray) -> None:
        self._c[field][:, slots] = 0
        self._d[field][:, slots] = 0

    def neighbours(
        self, field: str, slot: int, fired: int, exposure: int, min_count: int
    ) -> list[tuple[str, str, float, int]]:
        n = len(self.values)
        c, d = self._c[field][:n, slot], self._d[field][:n, slot]
        scores = npmi(c, exposure, fired, exposure, d, exposure)
        out = []
        for m in np.flatnonzero(c >= min_count):
            key, _, value = self.values[m].partition("=")
            out.append((key, value, float(scores[m]), int(c[m])))
        return out

    def snapshot(self) -> dict[str, Any]:
        n = len(self.values)
        return {"values": list(self.values), "overflow": self.overflow,
                "c": {f: self._c[f][:n].copy() for f in TEXT_FIELDS},
                "d": {f: self._d[f][:n].copy() for f in TEXT_FIELDS}}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(self.max_values, self.n_slots)  # type: ignore[misc]
        for name in snapshot["values"]:
            self._index[name] = len(self.values)
            self.values.append(name)
        self.overflow = int(snapshot["overflow"])
        n = len(self.values)
        for f in TEXT_FIELDS:
            self._c[f][:n] = snapshot["c"][f]
            self._d[f][:n] = snapshot["d"][f]

    # --- merge support (driven by CooccurrenceCounter.merge) ----------------------------------

    def expanded(self, pos: Mapping[str, np.ndarray], live: Mapping[str, np.ndarray],
                 sizes: Mapping[str, int]) -> dict[str, Any]:
        """Counts keyed by entry name, with columns moved to union slot positions."""
        out: dict[str, Any] = {"values": list(self.values), "overflow": self.overflow}
        n = len(self.values)
        for name, src in (("c", self._c), ("d", self._d)):
            out[name] = {}
            for f in TEXT_FIELDS:
                big = np.zeros((n, sizes[f]), dtype=np.int64)
                cols = np.flatnonzero(live[f])
                big[:, pos[f][cols]] = src[f][:n, cols]
                out[name][f] = big
        return out

    def merged_with(
        self, other: MetadataTable, mine: dict[str, Any], theirs: dict[str, Any]
    ) -> dict[str, Any]:
        names = list(mine["values"])
        names += [v for v in theirs["values"] if v not in set(names)][: self.max_values - len(names)]
        where = {v: i for i, v in enumerate(names)}
        out: dict[str, Any] = {"values": names,
                               "overflow": mine["overflow"] + theirs["overflow"]}
        for name in ("c", "d"):
            out[name] = {}
            for f in TEXT_FIELDS:
                total = np.zeros((len(names), mine[name][f].shape[1]), dtype=np.int64)
                for part in (mine, theirs):
                    rows = [where.get(v, -1) for v in part["values"]]
                    ok = np.array([r >= 0 for r in rows], dtype=bool)
                    total[np.array(rows, dtype=np.int64)[ok]] += part[name][f][ok]
                out[name][f] = total
        return out

    def load_shrunk(self, merged: dict[str, Any], pick: Mapping[str, np.ndarray]) -> None:
        self.restore({
            "values": merged["values"], "overflow": merged["overflow"],
            "c": {f: _pad(merged["c"][f][:, pick[f]], self.n_slots) for f in TEXT_FIELDS},
            "d": {f: _pad(merged["d"][f][:, pick[f]], self.n_slots) for f in TEXT_FIELDS},
        })


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((a.shape[0], width), dtype=np.int64)
    out[:, : a.shape[1]] = a
    return out
