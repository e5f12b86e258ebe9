"""DriftReportCollector: values from a real DriftReport, bounded cardinality, exposition format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from export.drift_reports import (
    AT,
    BASELINE,
    CANDIDATE,
    DOWN,
    MODEL_ID,
    UP,
    aa_result,
    drift_report,
    drift_result,
)
from saewatch.export import TOP_K_HARD_CAP, DriftReportCollector, ReportHolder
from saewatch.export.collector import MAX_LABEL_CHARS
from saewatch.models import DriftReport, FeatureDelta

DRIFT = {
    "model_id": MODEL_ID,
    "field": "response",
    "baseline": BASELINE,
    "candidate": CANDIDATE,
    "kind": "versions",
}


def scrape(
    report: DriftReport | None, top_k: int = 10, max_clusters: int = 16
) -> CollectorRegistry:
    registry = CollectorRegistry()
    holder = ReportHolder()
    if report is not None:
        holder.publish(report)
    registry.register(DriftReportCollector(holder, top_k=top_k, max_clusters=max_clusters))
    return registry


def samples(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for family in registry.collect() for s in family.samples if s.name == name]


def test_comparison_statistics_come_from_the_report() -> None:
    registry = scrape(drift_report())
    get = registry.get_sample_value
    assert get("saewatch_report_available") == 1.0
    assert get("saewatch_report_comparisons") == 3.0
    assert get("saewatch_report_generated_timestamp_seconds") == AT.timestamp()
    assert get("saewatch_comparison_drift_score", DRIFT) == 7.85
    assert get("saewatch_comparison_js_divergence", DRIFT) == 0.0432
    assert get("saewatch_comparison_significant_features", DRIFT) == 412.0
    assert get("saewatch_comparison_drift_detected", DRIFT) == 1.0
    assert get("saewatch_comparison_sequential_alarm", DRIFT) == 1.0
    assert get("saewatch_comparison_documents", {**DRIFT, "side": "baseline"}) == 805.0
    assert get("saewatch_comparison_documents", {**DRIFT, "side": "candidate"}) == 805.0
    assert get("saewatch_comparison_computed_timestamp_seconds", DRIFT) == AT.timestamp()


def test_verdict_is_one_hot_per_comparison() -> None:
    registry = scrape(drift_report())
    aa = {**DRIFT, "candidate": BASELINE, "kind": "window"}
    starved = {**DRIFT, "baseline": CANDIDATE, "candidate": "2026-11-25-rc1", "kind": "latest"}
    expected = {
        "drift": (DRIFT, 1.0, 0.0, 0.0),
        "no_drift": (aa, 0.0, 1.0, 0.0),
        "insufficient_data": (starved, 0.0, 0.0, 1.0),
    }
    for labels, *one_hot in expected.values():
        got = [
            registry.get_sample_value("saewatch_comparison_verdict", {**labels, "verdict": v})
            for v in ("drift", "no_drift", "insufficient_data")
        ]
        assert got == one_hot
    assert registry.get_sample_value("saewatch_comparison_drift_detected", aa) == 0.0


def test_top_features_by_rank_and_direction() -> None:
    registry = scrape(drift_report(), top_k=10)
    get = registry.get_sample_value
    up1 = {**DRIFT, "direction": "up", "rank": "1"}
    assert get("saewatch_top_feature_frequency_ratio", {**up1, "side": "baseline"}) == UP[0][2]
    assert get("saewatch_top_feature_frequency_ratio", {**up1, "side": "candidate"}) == UP[0][3]
    lor = get("saewatch_top_feature_log_odds_ratio", up1)
    assert lor is not None and lor > 1.0
    down2 = {**DRIFT, "direction": "down", "rank": "2"}
    assert get("saewatch_top_feature_log_odds_ratio", down2) < 0  # type: ignore[operator]
    info = {**down2, "feature": str(DOWN[1][0]), "label": DOWN[1][1]}
    assert get("saewatch_top_feature_info", info) == 1.0
    # Unlabelled features carry an empty label, not a missing one.
    unlabelled = {**DRIFT, "direction": "up", "rank": "6", "feature": "645", "label": ""}
    assert get("saewatch_top_feature_info", unlabelled) == 1.0
    # 12 up features in the report, top_k=10 exported; all 5 down features.
    ranks = {
        (s["direction"], s["rank"])
        for s in samples(registry, "saewatch_top_feature_info")
        if s["kind"] == "versions"
    }
    assert ranks == {("up", str(r)) for r in range(1, 11)} | {("down", str(r)) for r in range(1, 6)}


def test_versions_and_capped_clusters() -> None:
    registry = scrape(drift_report(), max_clusters=4)
    get = registry.get_sample_value
    v = {"model_id": MODEL_ID, "model_version": "2026-11-25-rc1", "field": "response"}
    assert get("saewatch_version_documents_total", v) == 37.0
    assert get("saewatch_version_first_seen_timestamp_seconds", v) == AT.timestamp() - 300
    clusters = samples(registry, "saewatch_cluster_share_ratio")
    assert len(clusters) == 2 * (4 + 1)  # two versions, 4 clusters each plus "other"
    shares = [
        get(
            "saewatch_cluster_share_ratio",
            {"model_id": MODEL_ID, "model_version": BASELINE, "cluster": c},
        )
        or 0.0
        for c in ("0", "1", "2", "3", "other")
    ]
    assert all(shares)
    assert shares == sorted(shares[:4], reverse=True) + [shares[4]]
    assert sum(shares) == pytest.approx(1.0)
    other_docs = get(
        "saewatch_cluster_documents",
        {"model_id": MODEL_ID, "model_version": BASELINE, "cluster": "other"},
    )
    assert other_docs is not None and other_docs > 0


def test_top_k_is_capped_and_series_stay_bounded() -> None:
    deltas = tuple(
        FeatureDelta(
            feature=f,
            label=f"feature {f}",
            count_baseline=1,
            count_candidate=9,
            freq_baseline=0.01,
            freq_candidate=0.09,
            log_odds_ratio=2.0,
            p_value=1e-6,
            q_value=1e-4,
            direction="up",
        )
        for f in range(400)
    )
    result = drift_result().model_copy(update={"top_up": deltas, "top_down": ()})
    report = DriftReport(generated_at=AT, comparisons=(result,))
    collector = DriftReportCollector(ReportHolder(), top_k=10_000)
    assert collector.top_k == TOP_K_HARD_CAP
    registry = scrape(report, top_k=10_000)
    info = samples(registry, "saewatch_top_feature_info")
    assert len(info) == TOP_K_HARD_CAP
    assert max(int(s["rank"]) for s in info) == TOP_K_HARD_CAP
    total = sum(len(f.samples) for f in registry.collect())
    # 4 series per rank (2 frequencies, log-odds, q) + info, plus the per-comparison families:
    # nowhere near one series per SAE feature (400 here, 4096+ in practice).
    assert total < 6 * TOP_K_HARD_CAP + 30


def test_labels_are_single_line_and_short() -> None:
    long_label = "refund\npolicy " + "x" * 200
    delta = drift_result().top_up[0].model_copy(update={"label": long_label})
    result = drift_result().model_copy(update={"top_up": (delta,)})
    registry = scrape(DriftReport(generated_at=AT, comparisons=(result,)))
    (info,) = [s for s in samples(registry, "saewatch_top_feature_info") if s["direction"] == "up"]
    assert "\n" not in info["label"]
    assert len(info["label"]) == MAX_LABEL_CHARS
    assert info["label"].startswith("refund policy x")


def test_before_the_first_report_only_availability_is_exported() -> None:
    registry = scrape(None)
    assert registry.get_sample_value("saewatch_report_available") == 0.0
    assert registry.get_sample_value("saewatch_comparison_drift_score", DRIFT) is None


def test_scrape_reads_the_latest_report_swapped_by_reference() -> None:
    holder = ReportHolder()
    registry = CollectorRegistry()
    registry.register(DriftReportCollector(holder))
    holder.publish(DriftReport(generated_at=AT, comparisons=(aa_result(),)))
    assert registry.get_sample_value("saewatch_comparison_drift_detected", DRIFT) is None
    later = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    holder.publish(DriftReport(generated_at=later, comparisons=(drift_result(computed_at=later),)))
    assert registry.get_sample_value("saewatch_comparison_drift_detected", DRIFT) == 1.0
    assert (
        registry.get_sample_value("saewatch_report_generated_timestamp_seconds")
        == later.timestamp()
    )


def test_exposition_names_types_and_describe() -> None:
    registry = scrape(drift_report())
    text = generate_latest(registry).decode()
    assert "# TYPE saewatch_comparison_drift_score gauge" in text
    assert "# TYPE saewatch_version_documents_total counter" in text
    assert "# TYPE saewatch_top_feature_info gauge" in text
    families = list(text_string_to_metric_families(text))
    assert all(f.name.startswith("saewatch_") for f in families)
    described = {m.name for m in DriftReportCollector(ReportHolder()).describe()}
    assert described == {f.name for f in registry.collect()}
    # describe() lets the registry refuse a second collector with the same names.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(DriftReportCollector(ReportHolder()))
