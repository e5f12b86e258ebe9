"""Score a new behaviour over the events the retrieval ring still holds (retro-active).

The ring indexes each event's ``retrieval_max_features`` strongest features only. The latest
events' full codes are kept too (:mod:`saewatch.state.background`, ``known``): those events are
scored exactly as live ones. An older event's score counts the behaviour's features among its
indexed ones, so a feature present but weaker than its 64 strongest is missed and the event can
score under the threshold its full codes would reach: an older event's flag is a lower bound.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from saewatch.models.behaviours import BehaviourDefinition
from saewatch.state.behaviours import ScoredEvents
from saewatch.state.retrieval import RetrievalIndex
from saewatch.state.ring_cooccurrence import posting_matches


def ring_scores(index: RetrievalIndex, definition: BehaviourDefinition,
                known: Mapping[str, float] | None = None) -> ScoredEvents:
    """Scores of ``definition`` for every event of the ring, oldest first.

    >>> from saewatch.state.testing import make_batch
    >>> ring = RetrievalIndex(capacity=100)
    >>> ring.update(make_batch([[3], [1], [3, 1]], d_sae=8, texts=["a", "b", "c"]))
    >>> d = BehaviourDefinition(name="b", examples=("x",), features=(3,), weights=(2.0,),
    ...                         bias=-1.0, threshold=0.0, encoder_id="e")
    >>> s = ring_scores(ring, d)
    >>> s.scores.tolist(), list(s.snippets)
    ([1.0, -1.0, 1.0], ['a', None, 'c'])
    """
    field = definition.field
    oldest = max(0, index._seq - index.capacity)  # noqa: SLF001 - the ring's own layout
    seq_all = np.arange(oldest, index._seq, dtype=np.int64)  # noqa: SLF001
    pos = seq_all % index.capacity
    scores = np.full(len(seq_all), definition.bias, dtype=np.float64)
    if definition.features and len(seq_all):
        seq, col = posting_matches(index._chunks[field], definition.features, oldest)  # noqa: SLF001
        weights = np.asarray(definition.weights, dtype=np.float64)
        scores += np.bincount(seq - oldest, weights=weights[col], minlength=len(seq_all))
    event_ids = [index._event_id[int(p)] for p in pos]  # noqa: SLF001
    if known:
        for i, event_id in enumerate(event_ids):
            exact = known.get(event_id)
            if exact is not None:
                scores[i] = exact
    flagged = scores >= definition.threshold
    versions = [index._versions[int(v)] for v in index._version[pos]]  # noqa: SLF001
    texts = index._text[field]  # noqa: SLF001
    return ScoredEvents(
        model_ids=[m for m, _ in versions], versions=[v for _, v in versions],
        times=index._time[pos].copy(),  # noqa: SLF001
        event_ids=event_ids,
        scores=scores, flagged=flagged,
        snippets=[texts[int(p)] if f else None for p, f in zip(pos, flagged, strict=True)])
