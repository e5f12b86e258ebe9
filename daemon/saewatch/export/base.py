"""What export reads: the latest :class:`DriftReport` (swapped by reference) and state queries.

Export never imports another stage. The app hands it two things:

* a :class:`ReportHolder`, into which the diff loop publishes each new immutable report; a scrape or
  an HTTP request reads whatever report is current without taking any lock the consumer holds;
* an object satisfying :class:`StateQueries` (the state engine does, structurally), used only by the
  JSON API for questions a report cannot answer (one feature's detail, retrieval, examples).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

from saewatch.models import ClusterShare, ComparisonKey, DriftReport, Snippet, VersionCount

if TYPE_CHECKING:
    from saewatch.models import FeatureDetail, RetrievalHit, TextField

logger = logging.getLogger(__name__)

# One point per diff interval (10 s by default): 720 points cover two hours, enough for the
# report page's "drift score over time" chart; Prometheus keeps the long history.
DEFAULT_HISTORY_POINTS = 720

RetrievalMode = Literal["or", "and"]


@runtime_checkable
class StateQueries(Protocol):
    """Read-only questions the HTTP API asks the state engine.

    Implementations must be safe to call from HTTP worker threads while the consumer updates the
    state (the state engine guards itself); none of them may touch the GPU.
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


class ReportHolder:
    """Thread-safe holder of the latest :class:`DriftReport` and a short drift-score history.

    The diff loop calls :meth:`publish`; readers call :attr:`latest` and :meth:`history`. Reports
    are frozen pydantic models, so readers may use the one they got for as long as they like.

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
    """

    def __init__(self, history_points: int = DEFAULT_HISTORY_POINTS) -> None:
        if history_points < 1:
            raise ValueError("history_points must be at least 1")
        self.history_points = history_points
        self._lock = threading.Lock()
        self._latest: DriftReport | None = None
        self._history: dict[ComparisonKey, deque[HistoryPoint]] = {}
        self._published = 0

    @property
    def latest(self) -> DriftReport | None:
        """The most recently published report, or ``None`` before the first diff."""
        return self._latest  # a single reference read: atomic, never sees a half-built report

    @property
    def published(self) -> int:
        """How many reports were published since start."""
        return self._published

    def publish(self, report: DriftReport) -> None:
        """Make ``report`` the latest and append its drift scores to the history.

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
            self._latest = report
            self._published += 1
        logger.debug(
            "published report generated at %s with %d comparisons",
            report.generated_at.isoformat(),
            len(report.comparisons),
        )

    def history(self, key: ComparisonKey) -> list[HistoryPoint]:
        """Drift-score points of ``key``, oldest first (empty for an unknown comparison)."""
        with self._lock:
            return list(self._history.get(key, ()))
