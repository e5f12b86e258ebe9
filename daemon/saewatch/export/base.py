"""What export reads: the latest :class:`DriftReport` and :class:`StateView`, swapped by reference.

Export never imports another stage. The app hands it a :class:`ReportHolder`, into which the
consumer thread publishes each new immutable report together with the frozen state view it was
computed from. A scrape or an HTTP request reads whatever pair is current without taking any lock
the consumer holds; the JSON API answers the questions a report cannot (one feature's detail,
retrieval, examples) from the view, through the :class:`StateQueries` protocol it satisfies.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

from saewatch.llm.summary import Narrative
from saewatch.models import ClusterShare, ComparisonKey, DriftReport, Snippet, VersionCount
from saewatch.views import StateView

if TYPE_CHECKING:
    from saewatch.models import FeatureDetail, RetrievalHit, TextField

logger = logging.getLogger(__name__)

# One point per diff interval (10 s by default): 720 points cover two hours, enough for the
# report page's "drift score over time" chart; Prometheus keeps the long history.
DEFAULT_HISTORY_POINTS = 720

RetrievalMode = Literal["or", "and"]


@runtime_checkable
class StateQueries(Protocol):
    """Read-only questions the HTTP API asks about the state.

    :class:`~saewatch.views.StateView` answers them from a frozen copy (what the app serves);
    implementations must be safe to call from HTTP worker threads and may not touch the GPU.
    """

    def version_counts(self) -> list[VersionCount]:
        """Documents seen per model_id, model_version and text field."""
        ...

    def feature_detail(
        self, feature: int, labels: Mapping[int, str] | None = None
    ) -> FeatureDetail:
        """Frequencies per version and window, examples and NPMI neighbours of ``feature``."""
        ...

    def retrieve(
        self,
        features: list[int],
        mode: RetrievalMode = "or",
        model_id: str | None = None,
        model_version: str | None = None,
        field: TextField = "response",
        limit: int = 20,
    ) -> list[RetrievalHit]:
        """Recent events whose codes contain any (``"or"``) or all (``"and"``) ``features``."""
        ...

    def examples(
        self, feature: int, model_id: str, model_version: str, field: TextField, k: int
    ) -> list[Snippet]:
        """Up to ``k`` snippets of events of one version on which ``feature`` fired strongly."""
        ...

    def cluster_shares(self, labels: Mapping[int, str] | None = None) -> list[ClusterShare]:
        """Share of each streaming cluster per model version."""
        ...


class HistoryPoint(NamedTuple):
    """One drift score of one comparison at the time the diff computed it."""

    at: datetime
    drift_score: float


class _Published(NamedTuple):
    """A report and the state view it was computed from, swapped in as one reference."""

    report: DriftReport
    view: StateView | None


class ReportHolder:
    """Thread-safe holder of the latest :class:`DriftReport`, its :class:`StateView` and a short
    drift-score history.

    The consumer calls :meth:`publish`; readers call :attr:`latest`, :attr:`view` and
    :meth:`history`. Reports and views are immutable, so readers may use the one they got for as
    long as they like, and reading never waits for the consumer.

    Parameters
    ----------
    history_points
        Points kept per comparison (oldest dropped first).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from saewatch.models import ComparisonKey, ComparisonResult, DriftReport
    >>> key = ComparisonKey(model_id="bot", field="response", baseline="v1", candidate="v2")
    >>> at = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    >>> result = ComparisonResult(key=key, n_baseline=500, n_candidate=480, verdict="drift",
    ...                           drift_score=4.2, computed_at=at)
    >>> holder = ReportHolder(history_points=3)
    >>> holder.latest is None
    True
    >>> holder.publish(DriftReport(generated_at=at, comparisons=(result,)))
    >>> holder.latest.comparisons[0].drift_score, [p.drift_score for p in holder.history(key)]
    (4.2, [4.2])
    >>> holder.view is None  # published without a state view
    True
    """

    def __init__(self, history_points: int = DEFAULT_HISTORY_POINTS) -> None:
        if history_points < 1:
            raise ValueError("history_points must be at least 1")
        self.history_points = history_points
        self._lock = threading.Lock()
        self._current: _Published | None = None
        self._history: dict[ComparisonKey, deque[HistoryPoint]] = {}
        self._narratives: dict[ComparisonKey, Narrative] = {}
        self._published = 0

    @property
    def latest(self) -> DriftReport | None:
        """The most recently published report, or ``None`` before the first diff."""
        current = self._current  # a single reference read: atomic, never a half-built report
        return current.report if current is not None else None

    @property
    def view(self) -> StateView | None:
        """The state view the latest report was computed from (``None`` if none was given)."""
        current = self._current
        return current.view if current is not None else None

    @property
    def published(self) -> int:
        """How many reports were published since start."""
        return self._published

    def publish(self, report: DriftReport, view: StateView | None = None) -> None:
        """Make ``report`` (and the ``view`` it was computed from) the latest and append its
        drift scores to the history.

        Comparisons missing from ``report`` lose their history, so memory stays bounded by the
        number of live comparisons times ``history_points``.
        """
        with self._lock:
            live: dict[ComparisonKey, deque[HistoryPoint]] = {}
            for result in report.comparisons:
                points = self._history.get(result.key) or deque(maxlen=self.history_points)
                if not points or points[-1].at < result.computed_at:
                    points.append(HistoryPoint(result.computed_at, result.drift_score))
                live[result.key] = points
            self._history = live
            self._narratives = {k: n for k, n in self._narratives.items() if k in live}
            self._current = _Published(report, view)
            self._published += 1
        logger.debug(
            "published report generated at %s with %d comparisons",
            report.generated_at.isoformat(),
            len(report.comparisons),
        )

    def narrative(self, key: ComparisonKey) -> Narrative | None:
        """The LLM's summary of ``key``'s findings (``labels.llm``), if one was written."""
        return self._narratives.get(key)

    def set_narrative(self, key: ComparisonKey, narrative: Narrative) -> None:
        """Keep ``narrative`` for ``key`` while the comparison is in the reports."""
        with self._lock:
            current = self._current
            if current is not None and any(r.key == key for r in current.report.comparisons):
                self._narratives = {**self._narratives, key: narrative}

    def history(self, key: ComparisonKey) -> list[HistoryPoint]:
        """Drift-score points of ``key``, oldest first (empty for an unknown comparison)."""
        with self._lock:
            return list(self._history.get(key, ()))
