"""Feature co-occurrence for NPMI, in bounded memory: dense counts among the top-N features.

Approximation, chosen over a count-min sketch because NPMI of *rare* pairs is what a sketch gets
most wrong (it only over-counts) and because a sketch cannot list top pairs without a second
structure: per text field we track the ``top_n`` features that fired in most documents so far and
keep, for every pair of tracked slots, the number of documents where both fired (``C``, singles on
the diagonal) and the number of documents observed while both were tracked (the *exposure* ``E``).
The tracked set is recomputed from the exact cumulative per-feature counts on a doubling schedule
(after 1, 2, 4 ... thousand documents, then every ``MAX_REFRESH_DOCS``); a feature that enters
starts with zero counts and zero exposure. Probabilities are ratios over the exposure,
``p_ij = C_ij / E_ij`` and ``p_i = C_ii / E_ii``, which is exact for pairs tracked from the start and
assumes a stationary stream for late entrants. Prompt×response pairs and (metadata value, feature)
pairs use the same slots. Memory: ``O(top_n**2)`` integers per field, independent of events.
Merge adds C and E exactly on the union of both tracked sets, then keeps the top N.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import numpy as np
from scipy.linalg import blas

from saewatch.models import TEXT_FIELDS, FeatureBatch, TextField
from saewatch.state.base import StateComponent
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import group_bincounts, group_rows
from saewatch.state.npmi import MetadataTable, npmi

logger = logging.getLogger(__name__)

FIRST_REFRESH_DOCS = 1_000  # the first tracked set is built from the first batch, then refreshed
MAX_REFRESH_DOCS = 100_000  # later refreshes are at most this many documents apart


class CooccurrenceCounter(StateComponent):
    """Document co-occurrence among the most frequent features, for NPMI neighbours and pairs.

    Parameters
    ----------
    d_sae
        Number of SAE features.
    top_n
        Tracked features per text field (memory grows with ``top_n**2``).
    metadata_values_max
        Distinct ``key=value`` metadata entries tracked; later ones are ignored.

    Examples
    --------
    >>> from saewatch.state.testing import make_batch
    >>> co = CooccurrenceCounter(d_sae=6, top_n=8)
    >>> co.update(make_batch([[0, 1], [0, 1], [2], [3]], 6))
    >>> round(co.npmi("response", 0, 1), 3), co.pair_count("response", 0, 1)
    (1.0, 2)
    """

    def __init__(self, d_sae: int, top_n: int = 256, metadata_values_max: int = 256) -> None:
        self.d_sae = d_sae
        self.top_n = top_n
        self.metadata_values_max = metadata_values_max
        n = min(top_n, d_sae)
        self._docs = 0
        self._next_refresh = 0
        # Keyed by field name ("prompt", "response"; "cross" = prompt rows x response columns).
        self._global: dict[str, np.ndarray] = {
            f: np.zeros(d_sae, dtype=np.int64) for f in TEXT_FIELDS}
        self._tracked: dict[str, np.ndarray] = {
            f: np.full(n, -1, dtype=np.int64) for f in TEXT_FIELDS}
        self._slot: dict[str, np.ndarray] = {
            f: np.full(d_sae, -1, dtype=np.int64) for f in TEXT_FIELDS}
        self._c: dict[str, np.ndarray] = {
            f: np.zeros((n, n), dtype=np.int64) for f in (*TEXT_FIELDS, "cross")}
        self._e: dict[str, np.ndarray] = {
            f: np.zeros((n, n), dtype=np.int64) for f in (*TEXT_FIELDS, "cross")}
        self._meta = MetadataTable(metadata_values_max, n)
        # Per-batch work is one in-place BLAS product per matrix (ssyrk within a field, sgemm
        # across): co-firings accumulate in float32 (exact below 2**24 per entry, flushed long
        # before) and the exposure increment, the same for every tracked pair, is kept as one
        # number until a query, refresh or snapshot.
        self._acc: dict[str, np.ndarray] = {
            f: np.zeros((n, n), dtype=np.float32, order="F") for f in self._c}
        self._acc_docs = 0
        self._pending = 0

    def _flush(self) -> None:
        """Move the float32 accumulators and the pending exposure into the int64 counts."""
        if self._pending == 0:
            return
        for name, acc in self._acc.items():
            if name != "cross":  # within a field only the upper triangle was accumulated
                acc += np.triu(acc, 1).T
            self._c[name] += np.rint(acc).astype(np.int64)
            acc[:] = 0.0
            self._e[name] += self._pending
        self._pending = self._acc_docs = 0

    # --- update -------------------------------------------------------------------------------

    def update(self, batch: FeatureBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        lengths = {f: np.diff(batch.codes(f).indptr) for f in TEXT_FIELDS}
        for f in TEXT_FIELDS:  # the per-version counts are already computed for this batch
            for version in group_rows(batch):
                self._global[f] += group_bincounts(batch, f, version)[0]
        self._docs += n
        if self._docs >= self._next_refresh:
            self.refresh()
        onehot: dict[str, np.ndarray] = {
            f: self._onehot(batch, f, lengths[f]) for f in TEXT_FIELDS}
        for f in TEXT_FIELDS:
            _accumulate_symmetric(self._acc[f], onehot[f])
        _accumulate(self._acc["cross"], onehot["prompt"], onehot["response"])
        self._pending += n
        self._acc_docs += n
        if self._acc_docs >= FLUSH_DOCS:
            self._flush()
        self._meta.update([e.metadata for e in batch.events], onehot)

    def _onehot(self, batch: FeatureBatch, field: TextField, lengths: np.ndarray) -> np.ndarray:
        codes = batch.codes(field)
        slots = self._slot[field][codes.indices]
        width = len(self._tracked[field])
        flat = np.repeat(np.arange(len(lengths)) * width, lengths) + slots
        out = np.zeros((len(lengths), width), dtype=np.float32)
        out.reshape(-1)[flat[slots >= 0]] = 1.0  # one flat scatter: cheaper than (row, col)
        return out

    def refresh(self) -> None:
        """Re-pick the tracked features from the cumulative counts (exact; also after merge)."""
        self._flush()
        for f in TEXT_FIELDS:
            self._retrack(f, _top(self._global[f], len(self._tracked[f])))
        self._next_refresh = min(
            max(2 * self._docs, FIRST_REFRESH_DOCS), self._docs + MAX_REFRESH_DOCS
        )

    def _retrack(self, field: TextField, wanted: np.ndarray) -> None:
        tracked = self._tracked[field]
        keep = np.isin(tracked, wanted) & (tracked >= 0)
        newcomers = wanted[~np.isin(wanted, tracked)]
        free = np.flatnonzero(~keep)[: len(newcomers)]
        tracked[~keep] = -1
        tracked[free] = newcomers
        reset = np.flatnonzero(~keep)
        self._slot[field][:] = -1
        live = tracked >= 0
        self._slot[field][tracked[live]] = np.flatnonzero(live)
        for name in (field, "cross"):
            axes = (0, 1) if name == field else ((0,) if field == "prompt" else (1,))
            for matrix in (self._c[name], self._e[name]):
                for axis in axes:
                    np.moveaxis(matrix, axis, 0)[reset] = 0
        self._meta.reset_slots(field, reset)

    # --- queries ------------------------------------------------------------------------------

    def tracked(self, field: TextField) -> np.ndarray:
        """Feature ids currently tracked for ``field`` (unused slots dropped)."""
        return self._tracked[field][self._tracked[field] >= 0].copy()

    def pair_count(self, field: TextField, a: int, b: int) -> int:
        self._flush()
        sa, sb = self._slot[field][a], self._slot[field][b]
        return 0 if sa < 0 or sb < 0 else int(self._c[field][sa, sb])

    def npmi(self, field: TextField, a: int, b: int) -> float:
        """NPMI of features ``a`` and ``b`` within one document; NaN if either is untracked."""
        self._flush()
        sa, sb = self._slot[field][a], self._slot[field][b]
        if sa < 0 or sb < 0:
            return float("nan")
        c, e = self._c[field], self._e[field]
        return float(npmi(c[sa, sb], e[sa, sb], c[sa, sa], e[sa, sa], c[sb, sb], e[sb, sb]))

    def neighbours(
        self, field: TextField, feature: int, min_count: int = 5
    ) -> list[tuple[int, float, int]]:
        """``(other feature, npmi, count)`` for tracked features co-firing in ``field``."""
        return self._row(field, field, feature, min_count)

    def cross_neighbours(
        self, field: TextField, feature: int, min_count: int = 5
    ) -> list[tuple[int, float, int]]:
        """Features of the *other* field of the same events, with NPMI and count."""
        other: TextField = "response" if field == "prompt" else "prompt"
        return self._row(field, other, feature, min_count)

    def _row(
        self, field: TextField, other: TextField, feature: int, min_count: int
    ) -> list[tuple[int, float, int]]:
        self._flush()
        s = self._slot[field][feature]
        if s < 0:
            return []
        cname = field if field == other else "cross"
        c, e = self._c[cname], self._e[cname]
        row_c, row_e = (c[s], e[s]) if field != "response" or cname != "cross" else (c[:, s], e[:, s])
        co, ce = self._c[other], self._e[other]
        scores = npmi(row_c, row_e, self._c[field][s, s], self._e[field][s, s],
                      np.diag(co), np.diag(ce))
        tracked = self._tracked[other]
        ok = (row_c >= min_count) & (tracked >= 0)
        if field == other:
            ok[s] = False
        return [(int(tracked[j]), float(scores[j]), int(row_c[j])) for j in np.flatnonzero(ok)]

    def metadata_neighbours(
        self, field: TextField, feature: int, min_count: int = 5
    ) -> list[tuple[str, str, float, int]]:
        """``(key, value, npmi, count)`` of metadata values co-occurring with ``feature``."""
        self._flush()
        s = self._slot[field][feature]
        if s < 0:
            return []
        return self._meta.neighbours(field, int(s), self._c[field][s, s], self._e[field][s, s],
                                     min_count)

    def top_pairs(
        self, field: TextField, k: int = 20, min_count: int = 5
    ) -> list[tuple[int, int, float, int]]:
        """The ``k`` pairs of distinct tracked features with the highest NPMI."""
        self._flush()
        c, e = self._c[field], self._e[field]
        d_c, d_e = np.diag(c), np.diag(e)
        scores = npmi(c, e, d_c[:, None], d_e[:, None], d_c[None, :], d_e[None, :])
        tracked = self._tracked[field]
        ok = np.triu(c >= min_count, 1) & (tracked[:, None] >= 0) & (tracked[None, :] >= 0)
        flat = np.flatnonzero(ok)
        best = flat[np.argsort(-scores.ravel()[flat], kind="stable")[:k]]
        i, j = np.unravel_index(best, c.shape)
        return [(int(tracked[a]), int(tracked[b]), float(scores[a, b]), int(c[a, b]))
                for a, b in zip(i, j, strict=True)]

    def frozen(self) -> CooccurrenceCounter:
        """A detached copy for read-only queries (a state view's NPMI neighbours).

        Pending counts are flushed into this counter first, so the copy has none: its queries
        then never write (``_flush`` is a no-op) and it is safe to share between threads.

        >>> from saewatch.state.testing import make_batch
        >>> co = CooccurrenceCounter(d_sae=4, top_n=4)
        >>> co.update(make_batch([[0, 1]] * 3, 4))
        >>> copy = co.frozen()
        >>> co.update(make_batch([[0, 1]] * 3, 4))
        >>> copy.pair_count("response", 0, 1), co.pair_count("response", 0, 1)
        (3, 6)
        """
        copy = CooccurrenceCounter(self.d_sae, self.top_n, self.metadata_values_max)
        copy.restore(self.snapshot())
        return copy

    # --- snapshot / merge ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        self._flush()
        return {
            "d_sae": self.d_sae, "top_n": self.top_n, "docs": self._docs,
            "next_refresh": self._next_refresh,
            "global": {f: self._global[f].copy() for f in TEXT_FIELDS},
            "tracked": {f: self._tracked[f].copy() for f in TEXT_FIELDS},
            "c": {k: v.copy() for k, v in self._c.items()},
            "e": {k: v.copy() for k, v in self._e.items()},
            "meta": self._meta.snapshot(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(int(snapshot["d_sae"]), int(snapshot["top_n"]),  # type: ignore[misc]
                      self.metadata_values_max)
        self._docs, self._next_refresh = int(snapshot["docs"]), int(snapshot["next_refresh"])
        for f in TEXT_FIELDS:
            self._global[f][:] = snapshot["global"][f]
            self._tracked[f][:] = snapshot["tracked"][f]
            live = self._tracked[f] >= 0
            self._slot[f][self._tracked[f][live]] = np.flatnonzero(live)
        for k in self._c:
            self._c[k][:] = snapshot["c"][k]
            self._e[k][:] = snapshot["e"][k]
        self._meta.restore(snapshot["meta"])

    def merge(self, other: Self) -> None:
        if (other.d_sae, other.top_n) != (self.d_sae, self.top_n):
            raise IncompatibleStateError("co-occurrence d_sae/top_n differ: cannot merge")
        self._flush()
        other._flush()
        union: dict[str, np.ndarray] = {
            f: np.union1d(self.tracked(f), other.tracked(f)) for f in TEXT_FIELDS}
        mine, theirs = self._expanded(union), other._expanded(union)
        for f in TEXT_FIELDS:
            self._global[f] += other._global[f]
        self._docs += other._docs
        self._next_refresh = min(self._next_refresh, other._next_refresh)
        c = {k: mine[0][k] + theirs[0][k] for k in mine[0]}
        e = {k: mine[1][k] + theirs[1][k] for k in mine[1]}
        meta_union = self._meta.merged_with(other._meta, mine[2], theirs[2])
        self._shrink(union, c, e, meta_union)

    def _expanded(
        self, union: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        """C, E and metadata counts re-indexed onto ``union`` (zeros where untracked)."""
        pos: dict[str, np.ndarray] = {
            f: np.searchsorted(union[f], self._tracked[f]) for f in TEXT_FIELDS}
        live: dict[str, np.ndarray] = {f: self._tracked[f] >= 0 for f in TEXT_FIELDS}
        c: dict[str, np.ndarray] = {}
        e: dict[str, np.ndarray] = {}
        for name in self._c:
            rf, cf = ("prompt", "response") if name == "cross" else (name, name)
            for out, src in ((c, self._c[name]), (e, self._e[name])):
                big = np.zeros((len(union[rf]), len(union[cf])), dtype=np.int64)
                r, k = np.flatnonzero(live[rf]), np.flatnonzero(live[cf])
                big[np.ix_(pos[rf][r], pos[cf][k])] = src[np.ix_(r, k)]
                out[name] = big
        return c, e, self._meta.expanded(pos, live, {f: len(union[f]) for f in TEXT_FIELDS})

    def _shrink(self, union: dict[str, np.ndarray], c: dict[str, np.ndarray],
                e: dict[str, np.ndarray], meta: Any) -> None:
        """Keep the top-N of the merged union as the new tracked set (slot = rank)."""
        n = len(self._tracked["prompt"])
        pick: dict[str, np.ndarray] = {
            f: np.sort(_top(self._global[f][union[f]], n)) for f in TEXT_FIELDS}
        for f in TEXT_FIELDS:
            self._tracked[f][:] = -1
            self._tracked[f][: len(pick[f])] = union[f][pick[f]]
            self._slot[f][:] = -1
            self._slot[f][self._tracked[f][: len(pick[f])]] = np.arange(len(pick[f]))
        for name in self._c:
            rf, cf = ("prompt", "response") if name == "cross" else (name, name)
            for dst, src in ((self._c[name], c[name]), (self._e[name], e[name])):
                dst[:] = 0
                dst[: len(pick[rf]), : len(pick[cf])] = src[np.ix_(pick[rf], pick[cf])]
        self._meta.load_shrunk(meta, pick)


def _top(counts: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest positive counts (ties broken by index, deterministic)."""
    order = np.lexsort((np.arange(len(counts)), -counts))[:n]
    return order[counts[order] > 0]


FLUSH_DOCS = 1 << 23  # float32 holds integers exactly up to 2**24; flush well before


def _accumulate(acc: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``acc += a.T @ b`` in place (BLAS sgemm with beta=1 on a Fortran-ordered ``acc``).

    ``a`` and ``b`` are C-ordered, so their transposes are Fortran-ordered views: no copies.
    """
    out = blas.sgemm(1.0, a.T, b.T, beta=1.0, c=acc, trans_b=1, overwrite_c=1)
    if out is not acc and not np.shares_memory(out, acc):  # BLAS had to copy: keep the result
        acc[:] = out


def _accumulate_symmetric(acc: np.ndarray, a: np.ndarray) -> None:
    """The upper triangle of ``acc += a.T @ a`` in place (BLAS ssyrk: half of sgemm's work).

    The lower triangle is left untouched (zero); :meth:`CooccurrenceCounter._flush` mirrors it.
    """
    out = blas.ssyrk(1.0, a.T, beta=1.0, c=acc, trans=0, lower=0, overwrite_c=1)
    if out is not acc and not np.shares_memory(out, acc):
        acc[:] = out
