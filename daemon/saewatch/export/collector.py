"""Prometheus collector for the latest drift report: bounded cardinality by construction.

Every family is rebuilt from the immutable report at scrape time (client_python's custom-collector
pattern), so a scrape never blocks the consumer nor touches the GPU. Series are per comparison,
per top-K rank (K at most :data:`TOP_K_HARD_CAP`), per capped cluster and per version; never one
series per SAE feature: feature ids only appear as label values of the top-K ``_info`` series.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import get_args

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from saewatch.export.base import ReportHolder
from saewatch.models import ClusterShare, ComparisonResult, DriftReport, FeatureDelta, Verdict

logger = logging.getLogger(__name__)

# The configuration allows top_k up to 50; the collector enforces it again so a programming error
# cannot multiply series: 50 ranks x 2 directions x 5 series = 500 series per comparison at most.
TOP_K_HARD_CAP = 50
# Clusters exported per model version; the smaller ones are summed into cluster="other".
MAX_CLUSTERS_PER_VERSION = 16
# Feature labels are free text from a labels file; keep label values short.
MAX_LABEL_CHARS = 80

COMPARISON_LABELS = ("model_id", "field", "baseline", "candidate", "kind")
FEATURE_LABELS = (*COMPARISON_LABELS, "direction", "rank")
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


def short_label(label: str | None, limit: int = MAX_LABEL_CHARS) -> str:
    """Single-line ``label`` cut to ``limit`` characters (``""`` when there is none).

    >>> short_label("mentions of\\nrefunds"), short_label(None), short_label("x" * 90)[-3:]
    ('mentions of refunds', '', 'xx…')
    """
    if not label:
        return ""
    flat = " ".join(label.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _comparison_values(result: ComparisonResult) -> list[str]:
    key = result.key
    return [key.model_id, key.field, key.baseline, key.candidate, key.kind]


class DriftReportCollector(Collector):
    """Yields the metric families of the latest :class:`DriftReport` in a :class:`ReportHolder`.

    Register it on an injected registry: ``registry.register(DriftReportCollector(holder))``.
    A scrape shows, for example::

        # HELP saewatch_comparison_drift_score Calibrated drift score (about 0 for A/A)
        # TYPE saewatch_comparison_drift_score gauge
        saewatch_comparison_drift_score{baseline="v1",candidate="v2",field="response",kind="versions",model_id="bot"} 4.2
        # HELP saewatch_top_feature_info Feature id and label at each top-K rank
        # TYPE saewatch_top_feature_info gauge
        saewatch_top_feature_info{...,direction="up",feature="1234",label="refund policy",rank="1"} 1.0

    Parameters
    ----------
    holder
        Where the app publishes reports.
    top_k
        Ranks exported per comparison and direction; clamped to :data:`TOP_K_HARD_CAP`.
    max_clusters
        Clusters exported per model version before the rest is summed into ``cluster="other"``.
    """

    def __init__(
        self,
        holder: ReportHolder,
        top_k: int = 10,
        max_clusters: int = MAX_CLUSTERS_PER_VERSION,
    ) -> None:
        if top_k < 1 or max_clusters < 1:
            raise ValueError("top_k and max_clusters must be at least 1")
        self.holder = holder
        self.top_k = min(top_k, TOP_K_HARD_CAP)
        self.max_clusters = max_clusters

    def describe(self) -> Iterator[Metric]:
        """Empty families, so the registry can detect name clashes at registration."""
        return iter(_Families().all())

    def collect(self) -> Iterator[Metric]:
        """Build fresh families from the report that is current right now."""
        report = self.holder.latest
        families = _Families()
        families.report_available.add_metric([], 0.0 if report is None else 1.0)
        if report is not None:
            self._fill(families, report)
        return iter(families.all())

    def _fill(self, families: _Families, report: DriftReport) -> None:
        families.report_generated.add_metric([], report.generated_at.timestamp())
        families.report_comparisons.add_metric([], float(len(report.comparisons)))
        for result in report.comparisons:
            families.add_comparison(result)
            for direction, deltas in (("up", result.top_up), ("down", result.top_down)):
                for rank, delta in enumerate(deltas[: self.top_k], start=1):
                    families.add_feature(result, direction, rank, delta)
        for version in report.versions:
            labels = [version.model_id, version.model_version, version.field]
            families.version_documents.add_metric(labels, float(version.documents))
            if version.first_seen is not None:
                families.version_first_seen.add_metric(labels, version.first_seen.timestamp())
            if version.last_seen is not None:
                families.version_last_seen.add_metric(labels, version.last_seen.timestamp())
        for labels, share, documents in capped_clusters(report.clusters, self.max_clusters):
            families.cluster_share.add_metric(labels, share)
            families.cluster_documents.add_metric(labels, float(documents))


def capped_clusters(
    clusters: Sequence[ClusterShare], max_clusters: int
) -> list[tuple[list[str], float, int]]:
    """Per model version, the ``max_clusters`` largest clusters and one ``"other"`` remainder.

    Returns ``(labels, share, documents)`` with labels ``[model_id, model_version, cluster]``.

    >>> from saewatch.models import ClusterShare
    >>> cs = [ClusterShare(cluster=c, model_id="m", model_version="v", share=s, documents=d)
    ...       for c, s, d in [(0, 0.5, 50), (1, 0.3, 30), (2, 0.2, 20)]]
    >>> [(lab[2], share, n) for lab, share, n in capped_clusters(cs, 2)]
    [('0', 0.5, 50), ('1', 0.3, 30), ('other', 0.2, 20)]
    """
    by_version: dict[tuple[str, str], list[ClusterShare]] = {}
    for share in clusters:
        by_version.setdefault((share.model_id, share.model_version), []).append(share)
    rows: list[tuple[list[str], float, int]] = []
    for (model_id, version), shares in sorted(by_version.items()):
        shares.sort(key=lambda s: (-s.share, s.cluster))
        for share in shares[:max_clusters]:
            rows.append(([model_id, version, str(share.cluster)], share.share, share.documents))
        rest = shares[max_clusters:]
        if rest:
            rows.append(
                (
                    [model_id, version, "other"],
                    sum(s.share for s in rest),
                    sum(s.documents for s in rest),
                )
            )
    return rows


class _Families:
    """The families of one scrape; attribute per metric so each name is written once."""

    def __init__(self) -> None:
        g, c = GaugeMetricFamily, CounterMetricFamily
        cmp_labels, feat_labels = list(COMPARISON_LABELS), list(FEATURE_LABELS)
        version_labels = ["model_id", "model_version", "field"]
        cluster_labels = ["model_id", "model_version", "cluster"]
        p = "saewatch_"
        self.report_available = g(p + "report_available", "1 once a drift report was computed")
        self.report_generated = g(
            p + "report_generated_timestamp_seconds", "When the latest drift report was computed"
        )
        self.report_comparisons = g(p + "report_comparisons", "Comparisons in the latest report")
        self.drift_score = g(
            p + "comparison_drift_score",
            "Calibrated drift score (about 0 for A/A)",
            labels=cmp_labels,
        )
        self.divergence = g(
            p + "comparison_js_divergence",
            "Jensen-Shannon divergence of the feature-frequency profiles",
            labels=cmp_labels,
        )
        self.significant = g(
            p + "comparison_significant_features",
            "Features whose frequency changed with q below the configured level",
            labels=cmp_labels,
        )
        self.drift_detected = g(
            p + "comparison_drift_detected", "1 when the verdict is drift", labels=cmp_labels
        )
        self.verdict = g(
            p + "comparison_verdict",
            "1 for the comparison's current verdict, 0 for the others",
            labels=[*cmp_labels, "verdict"],
        )
        self.alarm = g(
            p + "comparison_sequential_alarm",
            "1 when the always-valid sequential test over the stream has rejected",
            labels=cmp_labels,
        )
        self.documents = g(
            p + "comparison_documents",
            "Documents on each side of the comparison",
            labels=[*cmp_labels, "side"],
        )
        self.computed = g(
            p + "comparison_computed_timestamp_seconds",
            "When the comparison was last computed",
            labels=cmp_labels,
        )
        self.feature_freq = g(
            p + "top_feature_frequency_ratio",
            "Document frequency of the feature at a top-K rank, per side",
            labels=[*feat_labels, "side"],
        )
        self.feature_log_odds = g(
            p + "top_feature_log_odds_ratio",
            "Smoothed log-odds ratio, candidate vs baseline, of the feature at a top-K rank",
            labels=feat_labels,
        )
        self.feature_q = g(
            p + "top_feature_q_value",
            "Benjamini-Hochberg q-value of the feature at a top-K rank",
            labels=feat_labels,
        )
        self.feature_info = InfoMetricFamily(
            p + "top_feature", "Feature id and label at each top-K rank", labels=feat_labels
        )
        self.version_documents = c(
            p + "version_documents",
            "Documents seen per model version and field",
            labels=version_labels,
        )
        self.version_first_seen = g(
            p + "version_first_seen_timestamp_seconds",
            "Event time of the first document of a version",
            labels=version_labels,
        )
        self.version_last_seen = g(
            p + "version_last_seen_timestamp_seconds",
            "Event time of the latest document of a version",
            labels=version_labels,
        )
        self.cluster_share = g(
            p + "cluster_share_ratio",
            "Share of a version's documents in a streaming cluster (capped ids, rest is other)",
            labels=cluster_labels,
        )
        self.cluster_documents = g(
            p + "cluster_documents",
            "Documents of a version in a streaming cluster (capped ids, rest is other)",
            labels=cluster_labels,
        )

    def all(self) -> list[Metric]:
        return [m for m in vars(self).values() if isinstance(m, Metric)]

    def add_comparison(self, result: ComparisonResult) -> None:
        values = _comparison_values(result)
        self.drift_score.add_metric(values, result.drift_score)
        self.divergence.add_metric(values, result.divergence)
        self.significant.add_metric(values, float(result.n_significant))
        self.drift_detected.add_metric(values, 1.0 if result.verdict == "drift" else 0.0)
        for verdict in VERDICTS:
            self.verdict.add_metric([*values, verdict], 1.0 if result.verdict == verdict else 0.0)
        self.alarm.add_metric(values, 1.0 if result.sequential_alarm else 0.0)
        self.documents.add_metric([*values, "baseline"], float(result.n_baseline))
        self.documents.add_metric([*values, "candidate"], float(result.n_candidate))
        self.computed.add_metric(values, result.computed_at.timestamp())

    def add_feature(
        self, result: ComparisonResult, direction: str, rank: int, delta: FeatureDelta
    ) -> None:
        values = [*_comparison_values(result), direction, str(rank)]
        self.feature_freq.add_metric([*values, "baseline"], delta.freq_baseline)
        self.feature_freq.add_metric([*values, "candidate"], delta.freq_candidate)
        self.feature_log_odds.add_metric(values, delta.log_odds_ratio)
        self.feature_q.add_metric(values, delta.q_value)
        self.feature_info.add_metric(
            values, {"feature": str(delta.feature), "label": short_label(delta.label)}
        )
