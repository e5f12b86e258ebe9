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
from collections import deque
from typing import Any, Self

import numpy as np

from saewatch.models import N_DESCRIPTORS, TEXT_FIELDS, BetEvidence, FeatureBatch, TextField
from saewatch.state.base import StateComponent
from saewatch.state.betting import Observation, PairedBet, pack, unpack
from saewatch.state.descriptor_counts import descriptor_values
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import SEPARATOR

logger = logging.getLogger(__name__)

MAX_BETS = 3  # tests kept per (model_id, field): the newest version pairs
BetKey = tuple[str, str, str, str]  # (model_id, field, baseline, candidate)


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
        self._recent: dict[tuple[str, str, str], deque[Observation]] = {}
        self._bets: dict[BetKey, PairedBet] = {}

    def update(self, batch: FeatureBatch) -> None:
        for field in TEXT_FIELDS:
            codes = batch.codes(field)
            values = np.log1p(descriptor_values(batch, field))
            for i, event in enumerate(batch.events):
                if not event.text(field):
                    continue  # an absent prompt says nothing about either side
                obs = Observation(codes.indices[codes.indptr[i]:codes.indptr[i + 1]].astype(
                    np.int32), values[i])
                self._add(event.model_id, field, event.model_version, obs)

    def _add(self, model_id: str, field: TextField, version: str, obs: Observation) -> None:
        order = self._order.setdefault((model_id, field), [])
        if version not in order:
            if order:
                self._start(model_id, field, order[-1], version)
            order.append(version)
        for (m, f, base, cand), bet in self._bets.items():
            if m == model_id and f == field and version in (base, cand):
                bet.add(0 if version == base else 1, obs)
        self._recent.setdefault((model_id, field, version),
                                deque(maxlen=self.queue_events)).append(obs)

    def _start(self, model_id: str, field: str, baseline: str, candidate: str) -> None:
        bet = PairedBet(self.d_sae, N_DESCRIPTORS, self.queue_events)
        for obs in self._recent.get((model_id, field, baseline), ()):
            bet.add(0, obs)
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
            "recent": {SEPARATOR.join(k): pack(q, N_DESCRIPTORS)
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
            self._recent[(model_id, field, version)] = deque(unpack(rows),
                                                             maxlen=self.queue_events)
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
            self._recent.setdefault(recent, deque(maxlen=self.queue_events)).extend(queue)
        for key, bet in other._bets.items():
            if key in self._bets:
                self._bets[key].merge(bet)
            else:
                self._bets[key] = PairedBet.from_snapshot(bet.snapshot())
