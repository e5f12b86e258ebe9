"""Turn co-occurrence counts into typed NPMI neighbours and pairs (labels attached)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from saewatch.models import NpmiNeighbour, NpmiPair, TextField
from saewatch.state.cooccurrence import CooccurrenceCounter

logger = logging.getLogger(__name__)

NEIGHBOURS_PER_KIND = 10  # enough to read, small enough for a JSON answer
MIN_COUNT = 5  # pairs seen in fewer documents give NPMI values that are mostly noise


def feature_neighbours(
    co: CooccurrenceCounter, feature: int, labels: Mapping[int, str] | None = None,
    k: int = NEIGHBOURS_PER_KIND, min_count: int = MIN_COUNT,
) -> list[NpmiNeighbour]:
    """Response-field neighbours, prompt features of the same events, and metadata values.

    A feature tracked only among prompt features is described from the prompt side instead.

    >>> from saewatch.state.testing import make_batch
    >>> co = CooccurrenceCounter(d_sae=4, top_n=4)
    >>> co.update(make_batch([[0, 1]] * 6 + [[2]] * 6, 4))
    >>> [(n.feature, n.kind, n.npmi) for n in feature_neighbours(co, 0)]
    [(1, 'feature', 1.0)]
    """
    labels = labels or {}
    field: TextField = "response"
    cross_kind = "prompt_feature"
    if feature not in set(co.tracked("response").tolist()):
        field, cross_kind = "prompt", "response_feature"
    out: list[NpmiNeighbour] = []
    for kind, rows in (("feature", co.neighbours(field, feature, min_count)),
                       (cross_kind, co.cross_neighbours(field, feature, min_count))):
        rows.sort(key=lambda r: (-r[1], r[0]))
        out += [NpmiNeighbour(feature=f, label=labels.get(f), kind=kind, npmi=round(s, 6),
                              count=c) for f, s, c in rows[:k]]
    meta = sorted(co.metadata_neighbours(field, feature, min_count), key=lambda r: -r[2])
    out += [NpmiNeighbour(kind="metadata", metadata_key=key, metadata_value=value,
                          npmi=round(s, 6), count=c) for key, value, s, c in meta[:k]]
    return out


def top_pairs(
    co: CooccurrenceCounter, field: TextField = "response", k: int = 20,
    min_count: int = MIN_COUNT, labels: Mapping[int, str] | None = None,
) -> list[NpmiPair]:
    """The ``k`` feature pairs of ``field`` with the highest NPMI."""
    labels = labels or {}
    return [
        NpmiPair(feature=a, label=labels.get(a),
                 other=NpmiNeighbour(feature=b, label=labels.get(b), kind="feature",
                                     npmi=round(s, 6), count=c))
        for a, b, s, c in co.top_pairs(field, k, min_count)
    ]
