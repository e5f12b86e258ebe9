"""``MonitorState``: all of saewatch's state behind one update/snapshot/restore/merge.

It owns one instance of each algorithm (cumulative counts, windows, co-occurrence, clusters,
retrieval, examples), checks that every batch comes from the same encoder, and answers queries.
What ``diff`` and ``export`` read is a frozen :class:`~saewatch.views.StateView` (:meth:`view`),
taken by the consumer thread between batches; they never hold the live state. The re-entrant lock
still guards the live queries and merges against a concurrent update.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Self

import numpy as np

from saewatch.config import StateSettings
from saewatch.models import (
    N_DESCRIPTORS,
    ClusterShare,
    FeatureBatch,
    FeatureCounts,
    FeatureDetail,
    FeatureFrequency,
    NpmiPair,
    RetrievalHit,
    Snippet,
    SparseCodes,
    TextField,
    VersionCount,
)
from saewatch.models.behaviours import BehaviourDefinition
from saewatch.state.background import BackgroundCodes
from saewatch.state.base import RecordTally, StateComponent
from saewatch.state.behaviours import BehaviourTracker
from saewatch.state.bets import VersionBets
from saewatch.state.clusters import StreamingClusters
from saewatch.state.cooccurrence import CooccurrenceCounter
from saewatch.state.counts import FeatureCounter
from saewatch.state.dedup import RecentEvents
from saewatch.state.descriptor_counts import DescriptorCounter
from saewatch.state.examples import ExampleReservoirs
from saewatch.state.exceptions import (
    EncoderMismatchError,
    IncompatibleStateError,
    InvalidCodesError,
    UnknownKeyError,
)
from saewatch.state.neighbours import top_pairs
from saewatch.state.retrieval import RetrievalIndex
from saewatch.state.ring_behaviours import ring_scores
from saewatch.state.view import build_view
from saewatch.state.windows import WindowedCounter
from saewatch.views import StateView

logger = logging.getLogger(__name__)

# "seen" comes first: it drops events already counted before any other part sees them.
COMPONENTS = ("seen", "counts", "windows", "cooccurrence", "clusters", "retrieval", "examples",
              "descriptors", "bets", "background", "behaviours")
# Components a snapshot may lack: written before they existed, they restore empty.
ADDED_LATER = frozenset({"descriptors", "bets", "background", "behaviours"})


class MonitorState(StateComponent):
    """The daemon's whole state, built from :class:`~saewatch.config.StateSettings`.

    Parameters
    ----------
    settings
        State settings (windows, bounds, privacy, seed).
    encoder_id, d_sae
        The encoder whose codes this state accepts; when ``None`` they are taken from the first
        batch (or snapshot) and fixed from then on.

    Examples
    --------
    >>> from saewatch.state.testing import make_batch
    >>> state = MonitorState(StateSettings(retrieval_capacity=100))
    >>> state.update(make_batch([[1, 2], [2]], d_sae=8, version="v1"))
    >>> state.counts("m", "v1", "response").fired[:3].tolist()
    [0, 1, 2]
    >>> [(v.model_version, v.field, v.documents) for v in state.version_counts()]
    [('v1', 'prompt', 2), ('v1', 'response', 2)]

    :attr:`tally` says what became of every record, persisted with the snapshot's offsets:

    >>> state.update(make_batch([[3], [4]], d_sae=8, version="v1", start=1))  # e1 again, e2
    >>> state.count_invalid(1)
    >>> state.tally
    RecordTally(processed=3, duplicates=1, invalid=1)
    """

    def __init__(
        self, settings: StateSettings, encoder_id: str | None = None, d_sae: int | None = None
    ) -> None:
        self.settings = settings
        self.encoder_id = encoder_id
        self.d_sae = d_sae
        self._lock = threading.RLock()
        self._parts: dict[str, Any] = {}
        # Replaced, never mutated: a reader gets a consistent tally without taking the lock.
        self._tally = RecordTally()
        if d_sae is not None:
            self._build(d_sae)

    def _build(self, d_sae: int) -> None:
        s = self.settings
        self.d_sae = d_sae
        self._parts = {
            "seen": RecentEvents(s.dedup_capacity),
            "counts": FeatureCounter(d_sae),
            "windows": WindowedCounter(d_sae, s.windows),
            "cooccurrence": CooccurrenceCounter(d_sae, s.cooccurrence_top_n,
                                                s.metadata_values_max),
            "clusters": StreamingClusters(d_sae, s.cluster_count, s.cluster_dims,
                                          s.cluster_warmup_events, s.cluster_learn_every,
                                          seed=s.seed),
            "retrieval": RetrievalIndex(s.retrieval_capacity, s.retrieval_max_features,
                                        s.store_snippets, s.snippet_chars),
            "examples": ExampleReservoirs(d_sae, s.examples_per_feature, s.store_snippets,
                                          s.snippet_chars),
            "descriptors": DescriptorCounter(s.windows),
            "bets": VersionBets(d_sae, s.bet_queue_events),
            "background": BackgroundCodes(),
            "behaviours": BehaviourTracker(s.windows, s.store_snippets, s.snippet_chars),
        }

    def _bind(self, encoder_id: str, d_sae: int, what: str) -> None:
        if self.encoder_id is None:
            self.encoder_id = encoder_id
        if self.d_sae is None:
            self._build(d_sae)
        if (encoder_id, d_sae) != (self.encoder_id, self.d_sae):
            raise EncoderMismatchError(
                f"{what} has encoder {encoder_id!r} (d_sae={d_sae}) but this state holds codes of "
                f"{self.encoder_id!r} (d_sae={self.d_sae}); counts of different SAEs cannot be "
                "mixed: use a new state.snapshot_dir for the new encoder"
            )

    # --- the StateComponent contract ----------------------------------------------------------

    def update(self, batch: FeatureBatch) -> None:
        """Fold the events of ``batch`` not counted before in; :attr:`tally` says how many."""
        with self._lock:
            self._bind(batch.encoder_id, batch.d_sae, "batch")
            if len(batch) == 0:
                return
            _check_ids(batch)
            fresh = self._parts["seen"].fresh(batch)
            if len(fresh):
                for name in COMPONENTS[1:]:
                    self._parts[name].update(fresh)
            self._tally += RecordTally(processed=len(fresh), duplicates=len(batch) - len(fresh))

    def count_invalid(self, records: int) -> None:
        """Account for ``records`` the source rejected (they never reach :meth:`update`)."""
        if records < 0:
            raise ValueError("records must not be negative")
        with self._lock:
            self._tally += RecordTally(invalid=records)

    @property
    def tally(self) -> RecordTally:
        """What became of every record accounted for since the state began (persisted)."""
        return self._tally

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "encoder_id": self.encoder_id,
                "d_sae": self.d_sae,
                "settings": self.settings.model_dump(mode="json"),
                "tally": self._tally.as_dict(),
                **{name: part.snapshot() for name, part in self._parts.items()},
            }

    def restore(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            # Snapshots written before the tally existed restore it as zeros.
            tally = RecordTally.from_dict(snapshot.get("tally", {}))
            if snapshot["d_sae"] is not None:  # None: no valid event yet, only the tally
                if self.encoder_id is not None and self.d_sae is not None:
                    self._bind(snapshot["encoder_id"], int(snapshot["d_sae"]), "snapshot")
                self.encoder_id = snapshot["encoder_id"]
                self._build(int(snapshot["d_sae"]))
                for name in COMPONENTS:
                    if name in snapshot:
                        self._parts[name].restore(snapshot[name])
                    elif name in ADDED_LATER:
                        logger.info("snapshot has no %s (older format): they start empty", name)
                    else:
                        raise KeyError(f"snapshot lacks the state component {name!r}")
            self._tally = tally

    def merge(self, other: Self) -> None:
        with self._lock, other._lock:
            if other.d_sae is not None:
                self._bind(str(other.encoder_id), other.d_sae, "merged state")
                if other.settings != self.settings:
                    raise IncompatibleStateError("states have different settings: cannot merge")
                for name in COMPONENTS:
                    self._parts[name].merge(other._parts[name])
            self._tally += other._tally

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]  # locks do not pickle; a fresh one is made on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # --- watched behaviours --------------------------------------------------------------------

    def define_behaviour(self, definition: BehaviourDefinition) -> None:
        """Add a behaviour, scored at once over the events the retrieval ring holds."""
        with self._lock:
            if self.d_sae is None or definition.encoder_id != self.encoder_id:
                raise EncoderMismatchError(
                    f"behaviour {definition.name!r} was fitted on codes of "
                    f"{definition.encoder_id!r}, this state holds {self.encoder_id!r}: fit it "
                    "again with this state's encoder")
            background = self._parts["background"]  # the latest events' full codes: exact
            exact = definition.scores(background.codes(definition.field),
                                      background.descriptors(definition.field))
            known = dict(zip(background.event_ids(definition.field), exact.tolist(), strict=True))
            self._parts["behaviours"].define(
                definition, ring_scores(self._parts["retrieval"], definition, known))

    def remove_behaviour(self, name: str) -> BehaviourDefinition:
        with self._lock:
            if not self._parts:
                raise UnknownKeyError(f"no behaviour {name!r}: the state is empty")
            removed: BehaviourDefinition = self._parts["behaviours"].remove(name)
            return removed

    def behaviours(self) -> list[BehaviourDefinition]:
        with self._lock:
            return self._parts["behaviours"].definitions() if self._parts else []

    def background_descriptors(self, field: TextField) -> np.ndarray:
        """Descriptor values of the events of :meth:`background_codes`, in its order."""
        with self._lock:
            if not self._parts:
                return np.zeros((0, N_DESCRIPTORS), dtype=np.float32)
            values: np.ndarray = self._parts["background"].descriptors(field)
            return values

    def background_codes(self, field: TextField) -> SparseCodes:
        """Full codes of the latest events of ``field`` (what a new behaviour is fitted against)."""
        with self._lock:
            if not self._parts:
                return SparseCodes.from_rows([], [])
            codes: SparseCodes = self._parts["background"].codes(field)
            return codes

    # --- queries ------------------------------------------------------------------------------

    def window_names(self) -> list[str]:
        return ["all", *self.settings.windows.windows]

    def version_counts(self) -> list[VersionCount]:
        with self._lock:
            return self._parts["counts"].version_counts() if self._parts else []

    def counts(
        self, model_id: str, model_version: str, field: TextField, window: str = "all"
    ) -> FeatureCounts:
        with self._lock:
            if not self._parts:  # nothing seen yet: no key exists
                raise UnknownKeyError(f"no documents yet for {model_id}/{model_version}/{field}")
            counts: FeatureCounts
            if window == "all":
                counts = self._parts["counts"].counts(model_id, model_version, field)
            else:
                counts = self._parts["windows"].counts(model_id, model_version, field, window)
            return counts

    def view(self, now: datetime | None = None) -> StateView:
        """A frozen copy of what diff and export read: versions, counts per key and window,
        clusters, and detached copies of the examples, the retrieval ring and co-occurrence.

        Call it from the thread that updates (the consumer), between batches; the view never
        changes afterwards, whatever the state does, and reading it takes no lock.

        >>> from saewatch.state.testing import T0, make_batch
        >>> state = MonitorState(StateSettings(retrieval_capacity=100, cluster_warmup_events=0))
        >>> state.update(make_batch([[1, 2], [2]], d_sae=8))
        >>> view = state.view(now=T0)
        >>> state.update(make_batch([[2]], d_sae=8, start=2))
        >>> int(view.counts("m", "v1", "response").fired[2])
        2
        >>> int(state.counts("m", "v1", "response").fired[2])
        3
        >>> [h.event_id for h in view.retrieve([2])], view.taken_at == T0
        (['e1', 'e0'], True)
        """
        with self._lock:
            return build_view(self._parts, self.settings, self.window_names(),
                              now or datetime.now(UTC))

    def frequencies(self, feature: int) -> list[FeatureFrequency]:
        """How often ``feature`` fired per version, field and window (one implementation: the
        view's; this copies the state, so it is for tests and tools, not a hot path)."""
        return self.view().frequencies(feature)

    def feature_detail(self, feature: int, labels: Mapping[int, str] | None = None) -> FeatureDetail:
        """Frequencies, examples and NPMI neighbours of ``feature`` (through :meth:`view`)."""
        return self.view().feature_detail(feature, labels)

    def retrieve(
        self,
        features: Sequence[int],
        mode: Literal["and", "or"] = "or",
        model_id: str | None = None,
        model_version: str | None = None,
        field: TextField = "response",
        limit: int = 20,
    ) -> list[RetrievalHit]:
        with self._lock:
            if not self._parts:
                return []
            hits: list[RetrievalHit] = self._parts["retrieval"].retrieve(
                features, mode, model_id, model_version, field, limit)
            return hits

    def examples(
        self, feature: int, model_id: str, model_version: str, field: TextField, k: int = 5
    ) -> list[Snippet]:
        with self._lock:
            if not self._parts:
                return []
            found: list[Snippet] = self._parts["examples"].examples(
                feature, model_id, model_version, field, k)
            return found

    def cluster_shares(self, labels: Mapping[int, str] | None = None) -> list[ClusterShare]:
        with self._lock:
            return self._parts["clusters"].cluster_shares(labels) if self._parts else []

    def npmi_top_pairs(
        self, field: TextField = "response", k: int = 20, min_count: int = 5,
        labels: Mapping[int, str] | None = None,
    ) -> list[NpmiPair]:
        with self._lock:
            if not self._parts:
                return []
            return top_pairs(self._parts["cooccurrence"], field, k, min_count, labels)


def _check_ids(batch: FeatureBatch) -> None:
    for field in ("prompt", "response"):
        ids = batch.codes(field).indices
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= batch.d_sae):
            raise InvalidCodesError(
                f"{field} codes hold feature ids in [{int(ids.min())}, {int(ids.max())}] but "
                f"d_sae={batch.d_sae} (first event {batch.events[0].event_id}); fix the encoder"
            )
