"""Watched behaviours in the state: their definitions, per-version counts, windows, matches.

Every event folded in is scored for every defined behaviour (a sparse dot product each, see
:meth:`BehaviourDefinition.scores`); per (behaviour, model_id, version, field) the state counts
the events scored and those flagged, cumulatively and in the same event-time windows as the
feature counts (epoch-aligned buckets of ``max(bucket_seconds, W / max_buckets_per_window)``
seconds, so replicas merge bucket by bucket), and keeps the latest :data:`LATEST_KEPT` matches.
Definitions travel with the snapshot and merge (two replicas must agree on a name's
definition), so restarts and replicas score alike. A behaviour defined later starts from the
events the retrieval ring still holds (:meth:`define` with ``retro``, see
:mod:`saewatch.state.ring_behaviours`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import numpy as np

from saewatch.config import WindowSettings
from saewatch.models import FeatureBatch
from saewatch.models.behaviours import (
    MAX_BEHAVIOURS,
    BehaviourCount,
    BehaviourDefinition,
    BehaviourMatch,
)
from saewatch.state.base import StateComponent
from saewatch.state.descriptor_counts import descriptor_values
from saewatch.state.exceptions import IncompatibleStateError, StateError
from saewatch.state.keys import event_times, group_rows, key_to_str

logger = logging.getLogger(__name__)

LATEST_KEPT = 20  # matches kept per behaviour for the report page
MAX_FUTURE_SKEW_S = 3_600.0  # as the feature windows: a far-future timestamp moves no watermark

_Key = tuple[str, str, str, str]  # (behaviour, model_id, model_version, field)


class BehaviourError(StateError, ValueError):
    """A behaviour cannot be defined or removed as asked; the message says what to do."""


@dataclass(frozen=True)
class ScoredEvents:
    """Events scored for one behaviour: what :meth:`BehaviourTracker.define` folds in."""

    model_ids: Sequence[str]
    versions: Sequence[str]
    times: np.ndarray  # POSIX seconds
    event_ids: Sequence[str]
    scores: np.ndarray
    flagged: np.ndarray  # bool
    snippets: Sequence[str | None]


class BehaviourTracker(StateComponent):
    """Counts of events showing each defined behaviour, per version and window.

    Examples
    --------
    >>> from saewatch.state.testing import make_batch
    >>> d = BehaviourDefinition(name="b", examples=("x",), features=(3,), weights=(2.0,),
    ...                         bias=-1.0, threshold=0.0, encoder_id="test-encoder")
    >>> t = BehaviourTracker(WindowSettings(windows={"1h": 3600}))
    >>> t.define(d)
    >>> t.update(make_batch([[3], [1], [3, 1]], d_sae=8))
    >>> [(c.window, c.documents, c.flagged) for c in t.counts()]
    [('all', 3, 2), ('1h', 3, 2)]
    >>> [m.event_id for m in t.latest("b")]
    ['e2', 'e0']
    """

    def __init__(self, windows: WindowSettings, store_snippets: bool = True,
                 snippet_chars: int = 280) -> None:
        self.windows = windows
        self.store_snippets = store_snippets
        self.snippet_chars = snippet_chars
        self._defs: dict[str, BehaviourDefinition] = {}
        self._totals: dict[_Key, list[int]] = {}
        self._buckets: dict[str, dict[tuple[_Key, int], list[int]]] = {
            w: {} for w in windows.windows}
        self._watermark = -math.inf
        self._latest: dict[str, list[BehaviourMatch]] = {}

    # --- definitions --------------------------------------------------------------------------

    def define(self, definition: BehaviourDefinition, retro: ScoredEvents | None = None) -> None:
        """Add ``definition`` and fold ``retro`` (events scored before it existed) in."""
        if definition.name in self._defs:
            raise BehaviourError(f"behaviour {definition.name!r} exists already: remove it "
                                 "first (saewatch behaviour remove) or choose another name")
        if len(self._defs) >= MAX_BEHAVIOURS:
            raise BehaviourError(f"{MAX_BEHAVIOURS} behaviours are defined, the most allowed: "
                                 "remove one first")
        self._defs[definition.name] = definition
        self._latest[definition.name] = []
        if retro is not None and len(retro.times):
            self._fold(definition, retro)

    def remove(self, name: str) -> BehaviourDefinition:
        """Drop a behaviour and its counts; returns its definition."""
        found = self._defs.pop(name, None)
        if found is None:
            raise BehaviourError(f"no behaviour {name!r}; see saewatch behaviour list")
        self._totals = {k: v for k, v in self._totals.items() if k[0] != name}
        for w, buckets in self._buckets.items():
            self._buckets[w] = {k: v for k, v in buckets.items() if k[0][0] != name}
        self._latest.pop(name, None)
        return found

    def definitions(self) -> list[BehaviourDefinition]:
        return [self._defs[n] for n in sorted(self._defs)]

    # --- counting -----------------------------------------------------------------------------

    def update(self, batch: FeatureBatch) -> None:
        if not self._defs or len(batch) == 0:
            return
        times = event_times(batch)
        now = time.time() + MAX_FUTURE_SKEW_S
        valid = times[times <= now]
        if len(valid):
            self._watermark = max(self._watermark, float(valid.max()))
        groups = group_rows(batch)  # shared with the other components of this update
        ids = [e.event_id for e in batch.events]
        model_ids = [e.model_id for e in batch.events]
        versions = [e.model_version for e in batch.events]
        for d in self._defs.values():
            scores = d.scores(batch.codes(d.field), descriptor_values(batch, d.field))
            flagged = scores >= d.threshold
            snippets: list[str | None] = [None] * len(batch)
            for i in np.flatnonzero(flagged):
                snippets[i] = batch.events[i].text(d.field)
            self._fold(d, ScoredEvents(model_ids, versions, times, ids, scores, flagged,
                                       snippets), expire=False, groups=groups)
        self._expire()

    def _fold(self, d: BehaviourDefinition, ev: ScoredEvents, expire: bool = True,
              groups: Mapping[tuple[str, str], np.ndarray] | None = None) -> None:
        """Add scored events to the counts, vectorised per (model_id, version)."""
        if expire and len(ev.times):
            self._watermark = max(self._watermark, float(np.max(ev.times)))
        if groups is None:
            found: dict[tuple[str, str], list[int]] = {}
            for i, version in enumerate(zip(ev.model_ids, ev.versions, strict=True)):
                found.setdefault(version, []).append(i)
            groups = {k: np.asarray(v, dtype=np.int64) for k, v in found.items()}
        flagged = np.asarray(ev.flagged, dtype=np.int64)
        for (m, v), rows in groups.items():
            key = (d.name, m, v, d.field)
            total = self._totals.setdefault(key, [0, 0])
            total[0] += len(rows)
            total[1] += int(flagged[rows].sum())
            for w in self._buckets:
                bucket = (np.asarray(ev.times)[rows] // self._width(w)).astype(np.int64)
                live = bucket > self._newest_bucket(w) - self._n_buckets(w)
                uniq, inv = np.unique(bucket[live], return_inverse=True)
                docs = np.bincount(inv, minlength=len(uniq))
                hits = np.bincount(inv, weights=flagged[rows][live], minlength=len(uniq))
                for b, n, k in zip(uniq.tolist(), docs.tolist(), hits.tolist(), strict=True):
                    cell = self._buckets[w].setdefault((key, b), [0, 0])
                    cell[0] += n
                    cell[1] += int(k)
        matches = [BehaviourMatch(
            behaviour=d.name, event_id=ev.event_ids[i], model_id=ev.model_ids[i],
            model_version=ev.versions[i], timestamp=datetime.fromtimestamp(float(ev.times[i]), UTC),
            score=round(float(ev.scores[i]), 4), snippet=self._snippet(ev.snippets[i]))
            for i in np.flatnonzero(ev.flagged)[-LATEST_KEPT:]]
        self._latest[d.name] = _newest([*self._latest.get(d.name, []), *matches])
        if expire:
            self._expire()

    def _snippet(self, text: str | None) -> str | None:
        if not self.store_snippets or text is None:
            return None
        return text[: self.snippet_chars]

    def _width(self, window: str) -> int:
        length = self.windows.windows[window]
        return max(self.windows.bucket_seconds,
                   math.ceil(length / self.windows.max_buckets_per_window))

    def _n_buckets(self, window: str) -> int:
        return math.ceil(self.windows.windows[window] / self._width(window))

    def _newest_bucket(self, window: str) -> int:
        return int(self._watermark // self._width(window)) if self._watermark > -math.inf else 0

    def _expire(self) -> None:
        for w, buckets in self._buckets.items():
            oldest = self._newest_bucket(w) - self._n_buckets(w)
            for k in [k for k in buckets if k[1] <= oldest]:
                del buckets[k]

    def counts(self) -> list[BehaviourCount]:
        """Documents scored and flagged per behaviour, key and window (``"all"`` first)."""
        out = []
        for key in sorted(self._totals):
            name, model_id, version, field = key
            docs, hit = self._totals[key]
            out.append(BehaviourCount(behaviour=name, model_id=model_id, model_version=version,
                                      field=field, documents=docs, flagged=hit))
            for w, buckets in self._buckets.items():
                cells = [v for (k, _), v in buckets.items() if k == key]
                out.append(BehaviourCount(
                    behaviour=name, model_id=model_id, model_version=version, field=field,
                    window=w, documents=sum(c[0] for c in cells),
                    flagged=sum(c[1] for c in cells)))
        return out

    def latest(self, name: str) -> list[BehaviourMatch]:
        """The latest matches of ``name``, newest first."""
        return list(self._latest.get(name, []))

    # --- snapshot / restore / merge -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "definitions": [d.model_dump(mode="json") for d in self.definitions()],
            "totals": [[key_to_str(k), *v] for k, v in sorted(self._totals.items())],
            "buckets": {w: [[key_to_str(k), b, *v] for (k, b), v in sorted(cells.items())]
                        for w, cells in self._buckets.items()},
            "watermark": self._watermark if self._watermark > -math.inf else None,
            "latest": {n: [m.model_dump(mode="json") for m in ms]
                       for n, ms in self._latest.items()},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self._defs = {d["name"]: BehaviourDefinition.model_validate(d)
                      for d in snapshot["definitions"]}
        self._totals = {_key(k): [int(a), int(b)] for k, a, b in snapshot["totals"]}
        self._buckets = {w: {} for w in self.windows.windows}
        for w, cells in snapshot["buckets"].items():
            if w in self._buckets:  # a window no longer configured is dropped
                self._buckets[w] = {(_key(k), int(b)): [int(x), int(y)] for k, b, x, y in cells}
        mark = snapshot["watermark"]
        self._watermark = -math.inf if mark is None else float(mark)
        self._latest = {n: [BehaviourMatch.model_validate(m) for m in ms]
                        for n, ms in snapshot["latest"].items()}

    def merge(self, other: Self) -> None:
        for name, d in other._defs.items():
            mine = self._defs.get(name)
            if mine is not None and mine.model_dump(exclude={"created_at"}) != d.model_dump(
                    exclude={"created_at"}):
                raise IncompatibleStateError(
                    f"behaviour {name!r} is defined differently in the two states: remove it "
                    "from one of them before merging")
            self._defs.setdefault(name, d)
        for k, v in other._totals.items():
            mine_v = self._totals.setdefault(k, [0, 0])
            mine_v[0] += v[0]
            mine_v[1] += v[1]
        self._watermark = max(self._watermark, other._watermark)
        for w, cells in other._buckets.items():
            for k2, v in cells.items():
                cell = self._buckets.setdefault(w, {}).setdefault(k2, [0, 0])
                cell[0] += v[0]
                cell[1] += v[1]
        self._expire()
        for name, ms in other._latest.items():
            self._latest[name] = _newest([*self._latest.get(name, []), *ms])


def _key(text: str) -> _Key:
    name, model_id, version, field = text.split("|")
    return name, model_id, version, field


def _newest(matches: list[BehaviourMatch]) -> list[BehaviourMatch]:
    unique = {m.event_id: m for m in matches}
    return sorted(unique.values(), key=lambda m: (m.timestamp, m.event_id),
                  reverse=True)[:LATEST_KEPT]
