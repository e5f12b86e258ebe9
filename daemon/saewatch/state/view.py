"""Build a :class:`~saewatch.views.StateView` from the live state's parts.

Runs on the consumer thread (``MonitorState.view``), between two batches, so nothing changes
while it copies. What is copied, and why that is enough:

* counts: one :class:`FeatureCounts` per (model_id, version, field) and window; the cumulative
  ones are copies already, the window ones are sums of buckets (fresh arrays);
* examples: the ``[d_sae, k]`` reservoir rows (overwritten in place by later batches) and a
  shallow copy of the text table (its entries are never changed);
* retrieval: the ring's arrays and lists (overwritten in place); the posting chunks are shared;
* NPMI neighbours: a detached copy of the co-occurrence counts (a few ``top_n**2`` matrices);
* clusters: their shares, computed now (labels are attached later, by whoever has them);
* descriptors: one :class:`DescriptorStats` per key and window (fresh arrays, ~11 KiB each);
* bets: where each pooled betting test stands (a few numbers each).

Memory is bounded like the state's own: a few arrays of ``d_sae`` per key and window, the
reservoirs, one ring and the co-occurrence matrices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from saewatch.config import StateSettings
from saewatch.models import DescriptorStats, FeatureCounts, NpmiNeighbour
from saewatch.state.cooccurrence import CooccurrenceCounter
from saewatch.state.neighbours import feature_neighbours
from saewatch.views import StateView

logger = logging.getLogger(__name__)


class FrozenNeighbours:
    """NPMI neighbours answered from a detached copy of the co-occurrence counts.

    >>> from saewatch.state.testing import make_batch
    >>> co = CooccurrenceCounter(d_sae=4, top_n=4)
    >>> co.update(make_batch([[0, 1]] * 6 + [[2]] * 6, 4))
    >>> frozen = FrozenNeighbours(co)
    >>> co.update(make_batch([[0, 3]] * 60, 4))
    >>> [(n.feature, n.npmi) for n in frozen.neighbours(0, labels={1: "one"})]
    [(1, 1.0)]
    """

    __slots__ = ("_co",)

    def __init__(self, co: CooccurrenceCounter) -> None:
        self._co = co.frozen()

    def neighbours(
        self, feature: int, labels: Mapping[int, str] | None = None
    ) -> list[NpmiNeighbour]:
        return feature_neighbours(self._co, feature, labels)


def build_view(
    parts: Mapping[str, Any], settings: StateSettings, windows: Sequence[str], taken_at: datetime
) -> StateView:
    """The view of ``parts`` (``MonitorState``'s components; empty before the first batch)."""
    if not parts:
        return StateView(taken_at=taken_at, windows=tuple(windows),
                         examples_per_feature=settings.examples_per_feature)
    counter, windowed, tracker = parts["counts"], parts["windows"], parts["behaviours"]
    versions = counter.version_counts()
    table: list[FeatureCounts] = []
    described: list[DescriptorStats] = []
    descriptors = parts.get("descriptors")
    # A key counted before descriptors existed (an older snapshot) may have none yet.
    described_keys = set(descriptors.keys()) if descriptors is not None else set()
    for v in versions:
        table.append(counter.counts(v.model_id, v.model_version, v.field))
        table += [windowed.counts(v.model_id, v.model_version, v.field, w)
                  for w in windows if w != "all"]
        if descriptors is not None and (v.model_id, v.model_version, v.field) in described_keys:
            described += [descriptors.stats(v.model_id, v.model_version, v.field, w)
                          for w in windows]
    return StateView(
        taken_at=taken_at,
        windows=tuple(windows),
        versions=tuple(versions),
        feature_counts=tuple(table),
        clusters=tuple(parts["clusters"].cluster_shares()),
        descriptor_stats=tuple(described),
        bets=tuple(parts["bets"].all_evidence()) if "bets" in parts else (),
        behaviours=tuple(tracker.definitions()),
        behaviour_counts=tuple(tracker.counts()),
        behaviour_matches=tuple(m for d in tracker.definitions() for m in tracker.latest(d.name)),
        examples_per_feature=settings.examples_per_feature,
        example_source=parts["examples"].frozen(),
        retrieval_source=parts["retrieval"].frozen(),
        neighbour_source=FrozenNeighbours(parts["cooccurrence"]),
    )
