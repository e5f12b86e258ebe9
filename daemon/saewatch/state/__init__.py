"""The state stage: bounded, mergeable state folded from :class:`FeatureBatch` values.

:class:`MonitorState` composes one instance of each algorithm; :class:`SnapshotStore` persists
its snapshots with the source offsets they reflect.
"""

from saewatch.state.clusters import StreamingClusters
from saewatch.state.cooccurrence import CooccurrenceCounter
from saewatch.state.counts import FeatureCounter
from saewatch.state.examples import ExampleReservoirs
from saewatch.state.monitor import MonitorState
from saewatch.state.retrieval import RetrievalIndex
from saewatch.state.snapshot import FORMAT_VERSION, LoadedSnapshot, SnapshotStore
from saewatch.state.windows import WindowedCounter

__all__ = [
    "FORMAT_VERSION", "CooccurrenceCounter", "ExampleReservoirs", "FeatureCounter",
    "LoadedSnapshot", "MonitorState", "RetrievalIndex", "SnapshotStore", "StreamingClusters",
    "WindowedCounter",
]
