"""The state's frozen view: everything diff and export read, taken between two batches.

The consumer thread builds a :class:`StateView` (``MonitorState.view()``) every
``diff.interval_s``, computes the drift report from it and publishes both by reference. The diff
is then a pure function of the view, and the HTTP API answers from the latest view without any
lock on the live state, so a slow request never stalls the consumer.

The view is produced by one stage (state) and read by two (diff, export), so like ``models.py`` it
lives at the top level and imports no stage. Counts, versions and clusters are plain frozen
values; the parts that answer open-ended questions (examples of any feature, retrieval by any
features, NPMI neighbours) are detached read-only copies made by the state stage, seen here only
through the small protocols below.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from saewatch.errors import SaewatchError
from saewatch.models import (
    BetEvidence,
    ClusterShare,
    CooccurrenceCounts,
    DescriptorStats,
    FeatureCounts,
    FeatureDetail,
    FeatureFrequency,
    LengthStrata,
    NpmiNeighbour,
    RetrievalHit,
    Snippet,
    TextField,
    VersionCount,
    WindowName,
)
from saewatch.models.behaviours import BehaviourCount, BehaviourDefinition, BehaviourMatch

logger = logging.getLogger(__name__)

CountsKey = tuple[str, str, str, str]  # (model_id, model_version, field, window)
RetrievalMode = Literal["or", "and"]
DEFAULT_EXAMPLES = 5  # the state's default examples_per_feature


class UnknownCountsError(SaewatchError, LookupError):
    """The view holds no counts for that model_id/model_version/field/window; see versions."""


class ExampleSource(Protocol):
    """Strongest example snippets of a feature in one version (a detached copy in a view)."""

    def examples(
        self, feature: int, model_id: str, model_version: str, field: TextField, k: int = 5
    ) -> list[Snippet]:
        """Up to ``k`` snippets, best first; empty for an unknown feature or version."""
        ...


class RetrievalSource(Protocol):
    """Recent events by SAE features (a frozen copy of the retrieval ring in a view)."""

    def retrieve(
        self,
        features: Sequence[int],
        mode: RetrievalMode = "or",
        model_id: str | None = None,
        model_version: str | None = None,
        field: TextField = "response",
        limit: int = 20,
    ) -> list[RetrievalHit]:
        """Events whose codes hold any (``"or"``) or all (``"and"``) of ``features``."""
        ...

    def cooccurrence(
        self,
        features: Sequence[int],
        model_id: str,
        versions: Sequence[str],
        field: TextField = "response",
    ) -> CooccurrenceCounts:
        """How often ``features`` (at most ``MAX_COOCCURRENCE_FEATURES``) are present, alone and
        in pairs, in the held events of each of ``versions``: any features, not only the most
        frequent ones. Only an event's strongest indexed features count as present there."""
        ...

    def length_strata(
        self,
        features: Sequence[int],
        model_id: str,
        versions: Sequence[str],
        edges: Sequence[int],
        field: TextField = "response",
    ) -> LengthStrata:
        """Per version of ``versions`` and token-length stratum (``edges[s - 1] <= tokens <
        edges[s]``, ``edges`` strictly increasing), the held events' documents and how many of
        them have each of ``features`` present (strongest indexed features, as above)."""
        ...


class NeighbourSource(Protocol):
    """NPMI neighbours of a feature (a detached copy of the co-occurrence counts in a view)."""

    def neighbours(
        self, feature: int, labels: Mapping[int, str] | None = None
    ) -> list[NpmiNeighbour]:
        """Co-occurring features and metadata values of ``feature``, labels attached."""
        ...


@dataclass(frozen=True, eq=False)
class StateView:
    """An immutable copy of what the state knew at ``taken_at``.

    Parameters
    ----------
    taken_at
        When the view was taken; a report built from it carries this time.
    windows
        Window names, ``"all"`` (cumulative) first.
    versions
        Documents per model_id, model_version and field.
    feature_counts
        One :class:`FeatureCounts` per (model_id, model_version, field, window) of ``versions``.
        The view takes ownership: their arrays are made read-only.
    clusters
        Cluster shares per version (``top_labels`` empty; :meth:`cluster_shares` labels them).
    descriptor_stats
        Text-descriptor histograms per (model_id, model_version, field, window), like
        ``feature_counts`` (arrays made read-only); empty for states without descriptors.
    bets
        The pooled betting tests between consecutive versions (:meth:`bet`).
    examples_per_feature
        Examples a feature's detail shows.
    example_source, retrieval_source, neighbour_source
        Detached read-only query parts; ``None`` answers nothing (an empty state).

    Examples
    --------
    >>> import numpy as np
    >>> from datetime import UTC, datetime
    >>> rng = np.random.default_rng(0)
    >>> fired = rng.binomial(40, [0.5, 0.1, 0.9])
    >>> counts = FeatureCounts(model_id="m", model_version="v1", field="response",
    ...                        n_documents=40, fired=fired, activation_sum=fired * 1.5)
    >>> view = StateView(
    ...     taken_at=datetime(2026, 11, 20, tzinfo=UTC),
    ...     versions=[VersionCount(model_id="m", model_version="v1", field="response",
    ...                            documents=40)],
    ...     feature_counts=[counts])
    >>> view.counts("m", "v1", "response").fired.tolist()
    [21, 3, 39]
    >>> [(f.window, f.fired, f.frequency) for f in view.frequencies(2)]
    [('all', 39, 0.975)]
    >>> view.counts("m", "v1", "response").fired[0] = 0
    Traceback (most recent call last):
    ...
    ValueError: assignment destination is read-only
    >>> view.counts("m", "v2", "response")
    Traceback (most recent call last):
    ...
    saewatch.views.UnknownCountsError: no documents for m/v2/response (window 'all'); see versions
    """

    taken_at: datetime
    windows: tuple[WindowName, ...] = ("all",)
    versions: tuple[VersionCount, ...] = ()
    # Left out of repr: d_sae-long arrays and whole rings would bury the versions.
    feature_counts: tuple[FeatureCounts, ...] = field(default=(), repr=False)
    clusters: tuple[ClusterShare, ...] = field(default=(), repr=False)
    descriptor_stats: tuple[DescriptorStats, ...] = field(default=(), repr=False)
    bets: tuple[BetEvidence, ...] = ()
    # Watched behaviours: definitions, counts per key and window, latest matches (newest first).
    behaviours: tuple[BehaviourDefinition, ...] = field(default=(), repr=False)
    behaviour_counts: tuple[BehaviourCount, ...] = field(default=(), repr=False)
    behaviour_matches: tuple[BehaviourMatch, ...] = field(default=(), repr=False)
    examples_per_feature: int = DEFAULT_EXAMPLES
    example_source: ExampleSource | None = field(default=None, repr=False)
    retrieval_source: RetrievalSource | None = field(default=None, repr=False)
    neighbour_source: NeighbourSource | None = field(default=None, repr=False)
    _index: Mapping[CountsKey, FeatureCounts] = field(init=False, repr=False)
    _descriptor_index: Mapping[CountsKey, DescriptorStats] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Lists are accepted for convenience; tuples make the fields themselves immutable.
        for name in ("windows", "versions", "feature_counts", "clusters", "descriptor_stats",
                     "bets", "behaviours", "behaviour_counts", "behaviour_matches"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        index: dict[CountsKey, FeatureCounts] = {}
        for c in self.feature_counts:
            # FeatureCounts is frozen but its arrays are not: a reader writing into one would
            # change the counts every other reader (and every later report) sees.
            c.fired.flags.writeable = False
            c.activation_sum.flags.writeable = False
            index[(c.model_id, c.model_version, c.field, c.window)] = c
        object.__setattr__(self, "_index", index)
        described: dict[CountsKey, DescriptorStats] = {}
        for d in self.descriptor_stats:
            d.hist.flags.writeable = False
            d.sums.flags.writeable = False
            described[(d.model_id, d.model_version, d.field, d.window)] = d
        object.__setattr__(self, "_descriptor_index", described)

    # --- what diff reads ------------------------------------------------------------------------

    def version_counts(self) -> list[VersionCount]:
        """Documents seen per model_id, model_version and text field."""
        return list(self.versions)

    def window_names(self) -> list[WindowName]:
        return list(self.windows)

    def counts(
        self, model_id: str, model_version: str, field: TextField, window: WindowName = "all"
    ) -> FeatureCounts:
        """The counts of one key and window (read-only arrays)."""
        found = self._index.get((model_id, model_version, field, window))
        if found is None:
            if window not in self.windows:
                raise UnknownCountsError(f"no window {window!r}; configured: {list(self.windows)}")
            raise UnknownCountsError(f"no documents for {model_id}/{model_version}/{field} "
                                     f"(window {window!r}); see versions")
        return found

    def descriptors(
        self, model_id: str, model_version: str, field: TextField, window: WindowName = "all"
    ) -> DescriptorStats | None:
        """The text-descriptor histograms of one key and window; ``None`` where the view has
        none (a state from before descriptors, or a hand-built view)."""
        return self._descriptor_index.get((model_id, model_version, field, window))

    def bet(self, model_id: str, field: TextField, baseline: str,
            candidate: str) -> BetEvidence | None:
        """The pooled betting test between two versions (either order), if one runs."""
        for e in self.bets:
            if (e.model_id, e.field) == (model_id, field) and {e.baseline, e.candidate} == {
                    baseline, candidate}:
                return e
        return None

    def examples(
        self, feature: int, model_id: str, model_version: str, field: TextField,
        k: int = DEFAULT_EXAMPLES,
    ) -> list[Snippet]:
        """Up to ``k`` snippets of events of one version on which ``feature`` fired strongly."""
        if self.example_source is None:
            return []
        return self.example_source.examples(feature, model_id, model_version, field, k)

    def cluster_shares(self, labels: Mapping[int, str] | None = None) -> list[ClusterShare]:
        """Share of each streaming cluster per model version, top features labelled."""
        if labels is None:
            return list(self.clusters)
        return [c.model_copy(update={"top_labels": tuple(labels.get(f, "") for f in
                                                          c.top_features)})
                for c in self.clusters]

    # --- what export reads ----------------------------------------------------------------------

    def retrieve(
        self,
        features: Sequence[int],
        mode: RetrievalMode = "or",
        model_id: str | None = None,
        model_version: str | None = None,
        field: TextField = "response",
        limit: int = 20,
    ) -> list[RetrievalHit]:
        """Recent events whose codes contain any (``"or"``) or all (``"and"``) ``features``."""
        if self.retrieval_source is None:
            return []
        return self.retrieval_source.retrieve(features, mode, model_id, model_version, field,
                                              limit)

    def cooccurrence(
        self,
        features: Sequence[int],
        model_id: str,
        versions: Sequence[str],
        field: TextField = "response",
    ) -> CooccurrenceCounts:
        """Per-version document and pairwise joint counts of ``features`` over the recent events
        of the retrieval ring (no documents when the view has none)."""
        if self.retrieval_source is None:
            return CooccurrenceCounts.empty(list(dict.fromkeys(features)), model_id,
                                            list(dict.fromkeys(versions)), field)
        return self.retrieval_source.cooccurrence(features, model_id, versions, field)

    def length_strata(
        self,
        features: Sequence[int],
        model_id: str,
        versions: Sequence[str],
        edges: Sequence[int],
        field: TextField = "response",
    ) -> LengthStrata:
        """Per-version documents, and documents with each of ``features``, by token-length
        stratum over the recent events of the retrieval ring (none when the view has none)."""
        if self.retrieval_source is None:
            return LengthStrata.empty(list(dict.fromkeys(features)), model_id,
                                      list(dict.fromkeys(versions)), field, edges)
        return self.retrieval_source.length_strata(features, model_id, versions, edges, field)

    def frequencies(self, feature: int) -> list[FeatureFrequency]:
        """How often ``feature`` fired per version, field and window (windows with documents)."""
        out = []
        for v in self.versions:
            for window in self.windows:
                c = self.counts(v.model_id, v.model_version, v.field, window)
                if c.n_documents:
                    fired = int(c.fired[feature])  # IndexError (a LookupError) beyond d_sae
                    out.append(FeatureFrequency(
                        model_id=v.model_id, model_version=v.model_version, field=v.field,
                        window=window, documents=c.n_documents, fired=fired,
                        frequency=fired / c.n_documents))
        return out

    def feature_detail(
        self, feature: int, labels: Mapping[int, str] | None = None
    ) -> FeatureDetail:
        """Frequencies per version and window, the strongest response examples of all versions,
        and NPMI neighbours of ``feature``."""
        k = self.examples_per_feature
        snippets = [s for v in self.versions if v.field == "response"
                    for s in self.examples(feature, v.model_id, v.model_version, "response", k)]
        snippets.sort(key=lambda s: -s.activation)
        neighbours = (self.neighbour_source.neighbours(feature, labels)
                      if self.neighbour_source is not None else [])
        return FeatureDetail(
            feature=feature, label=(labels or {}).get(feature),
            frequencies=tuple(self.frequencies(feature)), examples=tuple(snippets[:k]),
            neighbours=tuple(neighbours),
        )
