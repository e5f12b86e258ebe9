"""Prometheus collector for the latest drift report: bounded cardinality by construction.

Every family is rebuilt from the immutable report at scrape time (client_python's custom-collector
pattern), so a scrape never blocks the consumer nor touches the GPU. Series are per comparison,
per top-K rank (K at most :data:`TOP_K_HARD_CAP`), per capped cluster, per version, and per text
descriptor (a fixed list of 11, ``saewatch.models.DESCRIPTORS``); never one series per SAE
feature: feature ids only appear as label values of the top-K ``_info`` series and of the
top-K theme series (a theme's leader).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import get_args

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from saewatch.export.base import ReportHolder
from saewatch.export.clusters import capped_clusters
from saewatch.models import (
    ComparisonResult,
    DescriptorFinding,
    DriftReport,
    FeatureDelta,
    Theme,
    Verdict,
)

logger = logging.getLogger(__name__)

# The configuration allows top_k up to 50; the collector enforces it again so a programming error
# cannot multiply series: 50 ranks x 2 directions x 7 series = 700 series per comparison at most.
TOP_K_HARD_CAP = 50
# Clusters exported per model version; the smaller ones are summed into cluster="other".
MAX_CLUSTERS_PER_VERSION = 16
# Feature labels are free text from a labels file; keep label values short.
MAX_LABEL_CHARS = 80

COMPARISON_LABELS = ("model_id", "field", "baseline", "candidate", "kind")
FEATURE_LABELS = (*COMPARISON_LABELS, "direction", "rank")
# A theme's leader feature and first label ride on its effect series: still one per rank.
THEME_LABELS = (*FEATURE_LABELS, "leader", "label")
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
        families.add("report_available", [], 0.0 if report is None else 1.0)
        if report is not None:
            self._fill(families, report)
        return iter(families.all())

    def _fill(self, families: _Families, report: DriftReport) -> None:
        families.add("report_generated", [], report.generated_at.timestamp())
        families.add("report_comparisons", [], float(len(report.comparisons)))
        for result in report.comparisons:
            families.add_comparison(result)
            for finding in result.descriptors:
                families.add_descriptor_finding(result, finding)
            for direction, deltas in (("up", result.top_up), ("down", result.top_down)):
                for rank, delta in enumerate(deltas[: self.top_k], start=1):
                    families.add_feature(result, direction, rank, delta)
                themes = [t for t in result.themes if t.direction == direction]
                for rank, theme in enumerate(themes[: self.top_k], start=1):
                    families.add_theme(result, rank, theme)
        for version in report.versions:
            labels = [version.model_id, version.model_version, version.field]
            families.add("version_documents", labels, float(version.documents))
            if version.first_seen is not None:
                families.add("version_first_seen", labels, version.first_seen.timestamp())
            if version.last_seen is not None:
                families.add("version_last_seen", labels, version.last_seen.timestamp())
        for d in report.descriptors:
            labels = [d.model_id, d.model_version, d.field, d.descriptor]
            families.add("descriptor_median", labels, d.median)
            families.add("descriptor_mean", labels, d.mean)
            families.add("descriptor_present", labels, d.present_share)
        for labels, share, documents in capped_clusters(report.clusters, self.max_clusters):
            families.add("cluster_share", labels, share)
            families.add("cluster_documents", labels, float(documents))


_CMP = COMPARISON_LABELS
_VERSION = ("model_id", "model_version", "field")
_CLUSTER = ("model_id", "model_version", "cluster")
_DESCRIPTOR = (*_VERSION, "descriptor")
# key -> (type, name without the saewatch_ prefix, help, label names). One entry per family keeps
# names, help texts and label sets in one place; describe() and collect() both build from it.
FAMILIES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "report_available": ("gauge", "report_available", "1 once a drift report was computed", ()),
    "report_generated": (
        "gauge",
        "report_generated_timestamp_seconds",
        "When the latest drift report was computed",
        (),
    ),
    "report_comparisons": ("gauge", "report_comparisons", "Comparisons in the latest report", ()),
    "drift_score": (
        "gauge",
        "comparison_drift_score",
        "Calibrated drift score (about 0 for A/A)",
        _CMP,
    ),
    "divergence": (
        "gauge",
        "comparison_js_divergence",
        "Jensen-Shannon divergence of the feature-frequency profiles",
        _CMP,
    ),
    "significant": (
        "gauge",
        "comparison_significant_features",
        "Features whose frequency changed with q below the configured level",
        _CMP,
    ),
    "drift_detected": ("gauge", "comparison_drift_detected", "1 when the verdict is drift", _CMP),
    "verdict": (
        "gauge",
        "comparison_verdict",
        "1 for the comparison's current verdict, 0 for the others",
        (*_CMP, "verdict"),
    ),
    "alarm": (
        "gauge",
        "comparison_sequential_alarm",
        "1 when the always-valid sequential test over the stream has rejected",
        _CMP,
    ),
    "bet_evidence": (
        "gauge",
        "comparison_log_evidence",
        "Peak log e-value of the pooled betting test (alarm at log(1/(alpha*bet_alpha_share)));"
        " absent where no bet runs",
        _CMP,
    ),
    "bet_alarm": (
        "gauge",
        "comparison_pooled_alarm",
        "1 when the pooled betting test over all features and descriptors has rejected",
        _CMP,
    ),
    "bet_pairs": (
        "gauge",
        "comparison_bet_pairs",
        "Pairs of events (one per side) the pooled betting test has bet on",
        _CMP,
    ),
    "themes": (
        "gauge",
        "comparison_significant_themes",
        "Groups of co-firing features the strongest significant features form",
        _CMP,
    ),
    "theme_effect": (
        "gauge",
        "comparison_theme_effect",
        "Change in share of documents with any feature of the theme at a top-K rank (with too "
        "few ring events: its leader's), candidate - baseline",
        THEME_LABELS,
    ),
    "theme_features": (
        "gauge",
        "comparison_theme_features",
        "Features in the theme at a top-K rank",
        FEATURE_LABELS,
    ),
    "documents": (
        "gauge",
        "comparison_documents",
        "Documents on each side of the comparison",
        (*_CMP, "side"),
    ),
    "computed": (
        "gauge",
        "comparison_computed_timestamp_seconds",
        "When the comparison was last computed",
        _CMP,
    ),
    "feature_freq": (
        "gauge",
        "top_feature_frequency_ratio",
        "Document frequency of the feature at a top-K rank, per side",
        (*FEATURE_LABELS, "side"),
    ),
    "feature_log_odds": (
        "gauge",
        "top_feature_log_odds_ratio",
        "Smoothed log-odds ratio, candidate vs baseline, of the feature at a top-K rank",
        FEATURE_LABELS,
    ),
    "feature_q": (
        "gauge",
        "top_feature_q_value",
        "Benjamini-Hochberg q-value of the feature at a top-K rank",
        FEATURE_LABELS,
    ),
    "feature_info": (
        "info",
        "top_feature",
        "Feature id and label at each top-K rank",
        FEATURE_LABELS,
    ),
    "version_documents": (
        "counter",
        "version_documents",
        "Documents seen per model version and field",
        _VERSION,
    ),
    "version_first_seen": (
        "gauge",
        "version_first_seen_timestamp_seconds",
        "Event time of the first document of a version",
        _VERSION,
    ),
    "version_last_seen": (
        "gauge",
        "version_last_seen_timestamp_seconds",
        "Event time of the latest document of a version",
        _VERSION,
    ),
    "cluster_share": (
        "gauge",
        "cluster_share_ratio",
        "Share of a version's documents in a streaming cluster (capped ids, rest is other)",
        _CLUSTER,
    ),
    "descriptor_median": (
        "gauge",
        "descriptor_median",
        "Median of a text descriptor (words, characters, list items...) over a version's "
        "documents (from fixed histogram buckets)",
        _DESCRIPTOR,
    ),
    "descriptor_mean": (
        "gauge",
        "descriptor_mean",
        "Mean of a text descriptor over a version's documents",
        _DESCRIPTOR,
    ),
    "descriptor_present": (
        "gauge",
        "descriptor_present_ratio",
        "Share of a version's documents where a text descriptor is above zero",
        _DESCRIPTOR,
    ),
    "descriptor_moved": (
        "gauge",
        "comparison_descriptor_moved",
        "1 when the always-valid test of a text descriptor has alarmed",
        (*_CMP, "descriptor"),
    ),
    "descriptor_effect": (
        "gauge",
        "comparison_descriptor_effect",
        "Signed largest gap between the sides' shares of documents above a descriptor bucket "
        "edge (> 0: candidate larger)",
        (*_CMP, "descriptor"),
    ),
    "descriptor_change": (
        "gauge",
        "comparison_descriptor_change_ratio",
        "Candidate / baseline - 1 of the descriptor's quoted statistic (median, mean or share)",
        (*_CMP, "descriptor"),
    ),
    "cluster_documents": (
        "gauge",
        "cluster_documents",
        "Documents of a version in a streaming cluster (capped ids, rest is other)",
        _CLUSTER,
    ),
}
_FACTORIES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "info": InfoMetricFamily}


class _Families:
    """The families of one scrape, built fresh from :data:`FAMILIES`."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {
            key: _FACTORIES[kind](f"saewatch_{name}", help_text, labels=list(labels))
            for key, (kind, name, help_text, labels) in FAMILIES.items()
        }

    def add(self, key: str, labels: list[str], value: float) -> None:
        family = self._families[key]
        assert isinstance(family, GaugeMetricFamily | CounterMetricFamily)
        family.add_metric(labels, value)

    def all(self) -> list[Metric]:
        return list(self._families.values())

    def add_comparison(self, result: ComparisonResult) -> None:
        values = _comparison_values(result)
        self.add("drift_score", values, result.drift_score)
        self.add("divergence", values, result.divergence)
        self.add("significant", values, float(result.n_significant))
        self.add("drift_detected", values, 1.0 if result.verdict == "drift" else 0.0)
        for verdict in VERDICTS:
            self.add("verdict", [*values, verdict], 1.0 if result.verdict == verdict else 0.0)
        self.add("alarm", values, 1.0 if result.sequential_alarm else 0.0)
        if result.bet is not None:
            self.add("bet_evidence", values, result.bet.peak_log_evidence)
            self.add("bet_alarm", values, 1.0 if result.bet_alarm else 0.0)
            self.add("bet_pairs", values, float(result.bet.pairs))
        self.add("themes", values, float(result.n_significant_themes))
        self.add("documents", [*values, "baseline"], float(result.n_baseline))
        self.add("documents", [*values, "candidate"], float(result.n_candidate))
        self.add("computed", values, result.computed_at.timestamp())

    def add_descriptor_finding(self, result: ComparisonResult, finding: DescriptorFinding) -> None:
        values = [*_comparison_values(result), finding.descriptor]
        self.add("descriptor_moved", values, 1.0 if finding.moved else 0.0)
        self.add("descriptor_effect", values, finding.effect)
        if finding.relative_change is not None:
            self.add("descriptor_change", values, finding.relative_change)

    def add_feature(
        self, result: ComparisonResult, direction: str, rank: int, delta: FeatureDelta
    ) -> None:
        values = [*_comparison_values(result), direction, str(rank)]
        self.add("feature_freq", [*values, "baseline"], delta.freq_baseline)
        self.add("feature_freq", [*values, "candidate"], delta.freq_candidate)
        self.add("feature_log_odds", values, delta.log_odds_ratio)
        self.add("feature_q", values, delta.q_value)
        info = self._families["feature_info"]
        assert isinstance(info, InfoMetricFamily)
        info.add_metric(values, {"feature": str(delta.feature), "label": short_label(delta.label)})

    def add_theme(self, result: ComparisonResult, rank: int, theme: Theme) -> None:
        values = [*_comparison_values(result), theme.direction, str(rank)]
        label = short_label(theme.labels[0] if theme.labels else None)
        self.add("theme_effect", [*values, str(theme.leader), label], theme.effect)
        self.add("theme_features", values, float(theme.size))
