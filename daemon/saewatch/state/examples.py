"""Per-feature top-k example reservoirs: the most strongly activating snippets per version.

A deterministic "reservoir" by activation (not a random sample): what a person reads to understand
a feature is its strongest examples. Per (model_id, model_version, field) an array ``[d_sae, k]`` of
activations holds the k best; a batch is screened against each feature's current minimum in one
vectorised comparison, so only the few real candidates reach Python. Texts are stored once per
event and reference-counted (a strong document is often the example of many features).
"""

from __future__ import annotations

import logging
from typing import Any, Self

import numpy as np

from saewatch.models import TEXT_FIELDS, FeatureBatch, LLMEvent, Snippet, TextField
from saewatch.state.base import StateComponent
from saewatch.state.counts import select_rows
from saewatch.state.exceptions import IncompatibleStateError
from saewatch.state.keys import StateKey, group_rows, key_from_str, key_to_str

logger = logging.getLogger(__name__)


class _Reservoir:
    __slots__ = ("act", "ids")

    def __init__(self, d_sae: int, k: int) -> None:
        self.act = np.full((d_sae, k), -np.inf, dtype=np.float32)
        self.ids: dict[int, str] = {}  # feature * k + slot -> event id


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
        self._texts: dict[str, list[Any]] = {}  # event id -> [refcount, {field: text}]

    def update(self, batch: FeatureBatch) -> None:
        for (model_id, version), rows in group_rows(batch).items():
            for field in TEXT_FIELDS:
                key = (model_id, version, field)
                res = self._res.setdefault(key, _Reservoir(self.d_sae, self.k))
                self._offer(res, batch, field, rows)

    def _offer(self, res: _Reservoir, batch: FeatureBatch, field: TextField, rows: np.ndarray) -> None:
        codes = batch.codes(field)
        lengths = np.diff(codes.indptr)[rows]
        doc = np.repeat(rows, lengths)
        feat, act = select_rows(codes.indptr, codes.indices, codes.values, rows)
        cand = np.flatnonzero(act > res.act[feat].min(axis=1))
        for c in cand[np.argsort(-act[cand], kind="stable")]:
            f, a = int(feat[c]), float(act[c])
            slot = int(np.argmin(res.act[f]))
            if a <= res.act[f, slot]:
                continue
            self._release(res.ids.pop(f * self.k + slot, None))
            res.act[f, slot] = a
            res.ids[f * self.k + slot] = self._retain(batch.events[int(doc[c])])

    def _retain(self, event: LLMEvent) -> str:
        entry = self._texts.get(event.event_id)
        if entry is None:
            texts = {f: event.text(f)[: self.snippet_chars] for f in TEXT_FIELDS}
            entry = self._texts[event.event_id] = [0, texts if self.store_snippets else {}]
        entry[0] += 1
        return event.event_id

    def _release(self, event_id: str | None) -> None:
        if event_id is None:
            return
        entry = self._texts[event_id]
        entry[0] -= 1
        if entry[0] == 0:
            del self._texts[event_id]

    def examples(
        self, feature: int, model_id: str, model_version: str, field: TextField, k: int | None = None
    ) -> list[Snippet]:
        """The strongest examples of ``feature``, best first (text empty if snippets are off)."""
        res = self._res.get((model_id, model_version, field))
        if res is None or not 0 <= feature < self.d_sae:
            return []
        order = np.argsort(-res.act[feature], kind="stable")[: k or self.k]
        out = []
        for slot in order:
            event_id = res.ids.get(feature * self.k + int(slot))
            if event_id is None:
                continue
            text = self._texts[event_id][1].get(field, "")
            out.append(Snippet(event_id=event_id, model_version=model_version,
                               activation=round(float(res.act[feature, slot]), 4), text=text))
        return out

    def snapshot(self) -> dict[str, Any]:
        keys = sorted(self._res)
        ids = [sorted(self._res[k].ids.items()) for k in keys]
        return {
            "d_sae": self.d_sae, "k": self.k,
            "keys": [key_to_str(k) for k in keys],
            "act": np.stack([self._res[k].act for k in keys]) if keys else
                   np.zeros((0, self.d_sae, self.k), dtype=np.float32),
            "slots": [[s for s, _ in items] for items in ids],
            "ids": [[e for _, e in items] for items in ids],
            "texts": {e: v[1] for e, v in sorted(self._texts.items())},
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.__init__(int(snapshot["d_sae"]), int(snapshot["k"]),  # type: ignore[misc]
                      self.store_snippets, self.snippet_chars)
        for i, name in enumerate(snapshot["keys"]):
            res = self._res[key_from_str(name)] = _Reservoir(self.d_sae, self.k)
            res.act[:] = snapshot["act"][i]
            for slot, event_id in zip(snapshot["slots"][i], snapshot["ids"][i], strict=True):
                res.ids[int(slot)] = event_id
                entry = self._texts.setdefault(event_id, [0, {}])
                entry[0] += 1
                if self.store_snippets:
                    entry[1] = snapshot["texts"].get(event_id, {})

    def merge(self, other: Self) -> None:
        """Keep the k strongest of both sides per feature (the union's top-k, exact)."""
        if (other.d_sae, other.k) != (self.d_sae, self.k):
            raise IncompatibleStateError("example reservoirs differ in d_sae or k: cannot merge")
        for key, theirs in other._res.items():
            mine = self._res.setdefault(key, _Reservoir(self.d_sae, self.k))
            for code, event_id in theirs.ids.items():
                f, slot = divmod(code, self.k)
                a = theirs.act[f, slot]
                low = int(np.argmin(mine.act[f]))
                if a > mine.act[f, low]:
                    self._release(mine.ids.pop(f * self.k + low, None))
                    mine.act[f, low] = a
                    entry = self._texts.setdefault(event_id, [0, other._texts[event_id][1]])
                    entry[0] += 1
                    mine.ids[f * self.k + low] = event_id
