"""``VersionBets``: the pooled, anytime-valid drift test of each version against the one before.

Per (model_id, field) the versions are kept in order of arrival; when a new version's first
event arrives, a :class:`~saewatch.state.betting.PairedBet` starts between the newest version
before it and the new one, its baseline queue seeded with the baseline's last
``bet_queue_events`` events. So a release (baseline events first, then the candidate's) is
tested from the candidate's first event on, and a canary (both interleaved) pairs events as they
come. Events of either side keep feeding the test after that. These are the pairs diff's
``latest`` comparison reads (:mod:`saewatch.diff.plan`); other comparisons (configured pairs
of older versions, time windows) have no bet and keep the per-feature verdict alone.

Bounded memory: per (model_id, field, version) a ring of the last ``bet_queue_events``
observations (present feature ids and descriptor values), per (model_id, field) at most
``MAX_BETS`` tests (the newest), each with two such queues and ``2 * d_sae`` sums.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import numpy as np

from saewatch.models import (
    DESCRIPTOR_NAMES,
    N_DESCRIPTORS,
    TEXT_FIELDS,
    BetEvidence,
    FeatureBatch,
    TextField,
)
from saewatch.state.base import StateComponent
from saewatch.state.betting import PairedBet
from saewatch.state.descriptor_counts import descriptor_values
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import SEPARATOR, group_rows
from saewatch.state.observations import ObservationQueue, Rows, pack, unpack_rows

logger = logging.getLogger(__name__)

MAX_BETS = 3  # tests kept per (model_id, field): the newest version pairs
BetKey = tuple[str, str, str, str]  # (model_id, field, baseline, candidate)
CHARACTERS = DESCRIPTOR_NAMES.index("characters")


class VersionBets(StateComponent):
    """Betting tests between consecutive versions, per (model_id, field).

    Parameters
    ----------
    d_sae
        Features per code.
    queue_events
        Recent events kept per version, and unpaired events per side of a test.

    Examples
    --------
    A release: v1's events first, then v2's, whose responses use other features.

    >>> from saewatch.state.testing import make_batch
    >>> bets = VersionBets(d_sae=8, queue_events=200)
    >>> bets.update(make_batch([[1, 2], [2, 3]] * 50, d_sae=8, version="v1"))
    >>> bets.update(make_batch([[5, 6], [6, 7]] * 50, d_sae=8, version="v2", start=100))
    >>> e = bets.evidence("m", "response", "v1", "v2")
    >>> e.pairs, e.peak_log_evidence > 10
    (100, True)
    >>> bets.evidence("m", "response", "v2", "v1") == e  # the test is symmetric
    True
    """

    def __init__(self, d_sae: int, queue_events: int) -> None:
        self.d_sae = d_sae
        self.queue_events = queue_events
        self._order: dict[tuple[str, str], list[str]] = {}  # (model_id, field) -> versions
        self._recent: dict[tuple[str, str, str], ObservationQueue] = {}
        self._bets: dict[BetKey, PairedBet] = {}

    def update(self, batch: FeatureBatch) -> None:
        models: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (model_id, version), rows in group_rows(batch).items():
            models.setdefault(model_id, []).append((version, rows))
        for field in TEXT_FIELDS:
            codes = batch.codes(field)
            values = descriptor_values(batch, field)
            # Copies: queues keep rows for many batches, never views of a batch's arrays.
            everything = Rows(np.array(codes.indptr, dtype=np.int64),
                              np.array(codes.indices, dtype=np.int32), np.log1p(values))
            present = values[:, CHARACTERS] > 0  # an absent prompt says nothing about a side
            for model_id, versions in models.items():
                self._update_model(model_id, field, versions, everything, present)

    def _update_model(self, model_id: str, field: TextField,
                      versions: list[tuple[str, np.ndarray]], everything: Rows,
                      present: np.ndarray) -> None:
        """One model's events of one field, in arrival order, as one event at a time would
        go: a version first seen at row r starts its test there, so the events before r feed
        the tests (and the baseline's queue) that existed before it."""
        names = [v for v, _ in versions]
        rows = np.concatenate([r for _, r in versions])
        which = np.repeat(np.arange(len(versions)), [len(r) for _, r in versions])
        order = np.argsort(rows, kind="stable")
        rows, which = rows[order], which[order]
        kept = present[rows]
        rows, which = rows[kept], which[kept]
        known = self._order.setdefault((model_id, field), [])
        starts = sorted((int(np.argmax(which == k)), k) for k in np.unique(which).tolist()
                        if names[k] not in known)
        begin = 0
        for at, k in [*starts, (len(rows), -1)]:
            if at > begin:
                self._feed(model_id, field, names, everything.select(rows[begin:at]),
                           which[begin:at])
            if k >= 0:
                if known:
                    self._start(model_id, field, known[-1], names[k])
                known.append(names[k])
            begin = at

    def _feed(self, model_id: str, field: TextField, names: list[str], rows: Rows,
              which: np.ndarray) -> None:
        """Events of known versions (``which``: their index in ``names``) to their tests."""
        present = np.unique(which).tolist()
        split = {k: rows.select(np.flatnonzero(which == k)) for k in present}
        for (m, f, base, cand), bet in self._bets.items():
            if (m, f) != (model_id, field):
                continue
            k = [names.index(v) if v in names else -1 for v in (base, cand)]
            sides = np.full(len(which), -1)
            sides[which == k[0]], sides[which == k[1]] = 0, 1
            sides = sides[sides >= 0]
            if len(sides):
                empty = Rows.empty(N_DESCRIPTORS)
                bet.extend_sides(sides, split.get(k[0], empty), split.get(k[1], empty))
        for k in present:
            self._recent.setdefault(
                (model_id, field, names[k]), ObservationQueue(self.queue_events, N_DESCRIPTORS)
            ).extend(split[k])

    def _start(self, model_id: str, field: str, baseline: str, candidate: str) -> None:
        bet = PairedBet(self.d_sae, N_DESCRIPTORS, self.queue_events)
        recent = self._recent.get((model_id, field, baseline))
        if recent is not None:
            seed = recent.rows()
            bet.extend(np.zeros(len(seed), dtype=np.int64), seed)
        self._bets[(model_id, field, baseline, candidate)] = bet
        mine = [k for k in self._bets if k[:2] == (model_id, field)]
        for old in mine[:-MAX_BETS]:
            del self._bets[old]
        logger.info("betting test started: %s/%s %s -> %s (%d baseline events queued)",
                    model_id, field, baseline, candidate, bet.pending(0))

    def evidence(self, model_id: str, field: str, baseline: str,
                 candidate: str) -> BetEvidence | None:
        """The test between two versions (either order), or ``None`` if none runs."""
        for base, cand in ((baseline, candidate), (candidate, baseline)):
            bet = self._bets.get((model_id, field, base, cand))
            if bet is not None:
                return BetEvidence(
                    model_id=model_id, field=field, baseline=base, candidate=cand,
                    pairs=bet.pairs, log_evidence=bet.log_evidence,
                    peak_log_evidence=bet.peak_log_evidence,
                    pending_baseline=bet.pending(0), pending_candidate=bet.pending(1))
        return None

    def all_evidence(self) -> list[BetEvidence]:
        out = [self.evidence(*key) for key in self._bets]
        return [e for e in out if e is not None]

    # --- snapshot / restore / merge -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "d_sae": self.d_sae, "queue_events": self.queue_events,
            "order": {SEPARATOR.join(k): list(v) for k, v in self._order.items()},
            "recent": {SEPARATOR.join(k): pack(q.rows(), N_DESCRIPTORS)
                       for k, q in self._recent.items()},
            "bets": {SEPARATOR.join(k): b.snapshot() for k, b in self._bets.items()},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(int(snapshot["d_sae"]), int(snapshot["queue_events"]))  # type: ignore[misc]
        for name, versions in snapshot["order"].items():
            model_id, field = name.split(SEPARATOR)
            self._order[(model_id, field)] = list(versions)
        for name, rows in snapshot["recent"].items():
            model_id, field, version = name.split(SEPARATOR)
            queue = self._recent[(model_id, field, version)] = ObservationQueue(
                self.queue_events, N_DESCRIPTORS)
            queue.extend(unpack_rows(rows))
        for name, data in snapshot["bets"].items():
            model_id, field, base, cand = name.split(SEPARATOR)
            self._bets[(model_id, field, base, cand)] = PairedBet.from_snapshot(data)

    def merge(self, other: Self) -> None:
        """Fold in another replica's tests (:meth:`PairedBet.merge`: wealths average) and
        recent events; a test only the other ran is taken over as it is."""
        if (other.d_sae, other.queue_events) != (self.d_sae, self.queue_events):
            raise IncompatibleStateError("betting tests of different sizes cannot merge")
        for pair, versions in other._order.items():
            mine = self._order.setdefault(pair, [])
            mine += [v for v in versions if v not in mine]
        for recent, queue in other._recent.items():
            self._recent.setdefault(recent, ObservationQueue(self.queue_events, N_DESCRIPTORS)
                                    ).extend(queue.rows())
        for key, bet in other._bets.items():
            if key in self._bets:
                self._bets[key].merge(bet)
            else:
                self._bets[key] = PairedBet.from_snapshot(bet.snapshot())
