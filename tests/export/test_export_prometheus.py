"""A real Prometheus scraping the real exporter: alerts fire on drift, not on A/A, and every
metric name the rules and dashboards use is really exported."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from export.drift_reports import (
    BASELINE,
    BEHAVIOUR,
    CANDIDATE,
    MODEL_ID,
    UP,
    aa_report,
    drift_report,
    exercise_pipeline,
)
from export.export_harness import ExporterFactory
from export.http_helpers import fetch
from export.promql_names import DASHBOARDS_DIR, dashboards, expressions, names_used, recorded_names
from tests.support.prometheus import RULES_DIR, PrometheusServer, fast_rules

pytestmark = pytest.mark.prometheus

StartPrometheus = Callable[..., PrometheusServer]
FOR = "3s"  # every alert's `for:` in the test copy of the rules
DRIFT_LABELS = {
    "alertname": "SaewatchBehaviouralDrift",
    "model_id": MODEL_ID,
    "field": "response",
    "baseline": BASELINE,
    "candidate": CANDIDATE,
    "kind": "versions",
    "severity": "warning",
}


def test_drift_alert_fires_for_a_drifting_report(
    exporter: ExporterFactory, prometheus: StartPrometheus, tmp_path: Path
) -> None:
    ex = exporter(report=drift_report())
    prom = prometheus([ex.target], fast_rules(tmp_path / "rules", FOR))
    firing = prom.wait_for_alert("SaewatchBehaviouralDrift", timeout=60)
    assert [a["labels"] for a in firing] == [DRIFT_LABELS]
    assert firing[0]["annotations"]["summary"] == (
        f"{MODEL_ID} responses drifted: {BASELINE} -> {CANDIDATE}"
    )
    # The starved release candidate in the same report raises its own alert.
    (starved,) = prom.wait_for_alert("SaewatchNewVersionTooFewEvents", timeout=30)
    assert starved["labels"]["candidate"] == "2026-11-25-rc1"


def test_aa_report_does_not_fire_until_drift_is_published(
    exporter: ExporterFactory, prometheus: StartPrometheus, tmp_path: Path
) -> None:
    ex = exporter(report=aa_report())
    prom = prometheus([ex.target], fast_rules(tmp_path / "rules", FOR))
    recorded = prom.wait_until(
        lambda: prom.query("saewatch:comparison_drift_detected:max"), 60, "the recording rule"
    )
    assert [r["value"][1] for r in recorded] == ["0"]
    # Rules evaluate every second: 5 s is longer than `for:` (3 s), so a drift alert on this
    # data would be firing by now.
    time.sleep(5)
    assert prom.alerts("SaewatchBehaviouralDrift") == []
    # The same pipeline alerts as soon as the diff publishes a drifting report.
    ex.holder.publish(drift_report(generated_at=aa_report().generated_at))
    firing = prom.wait_for_alert("SaewatchBehaviouralDrift", timeout=60)
    assert [a["labels"]["candidate"] for a in firing] == [CANDIDATE]


def test_metric_names_in_rules_and_dashboards_are_exported(
    exporter: ExporterFactory, prometheus: StartPrometheus, tmp_path: Path
) -> None:
    ex = exporter(report=drift_report())
    exercise_pipeline(ex.metrics)
    prom = prometheus([ex.target], sorted(RULES_DIR.glob("*.yml")))
    recorded = recorded_names()
    prom.wait_until(lambda: recorded <= prom.metric_names(), 60, "every recording rule")
    used = names_used()
    assert len(used) > 30
    missing = {n: sorted(files) for n, files in used.items() if n not in prom.metric_names()}
    assert not missing, f"used in PromQL but never exported or recorded: {missing}"
    # The exporter's own scrape agrees for the raw (non-recorded) names.
    scraped = {
        s.name
        for f in text_string_to_metric_families(fetch(ex.url + "/metrics").text)
        for s in f.samples
    }
    assert {n for n in used if ":" not in n} <= scraped
    _dashboard_queries_answer(prom)
    _previews_render(prom, tmp_path)


def _dashboard_queries_answer(prom: PrometheusServer) -> None:
    """Every dashboard query runs (variables filled in); the drill-down tables join labels."""
    variables = {
        "$model_id": MODEL_ID,
        "$field": "response",
        "$baseline": BASELINE,
        "$candidate": CANDIDATE,
        "$kind": "versions",
        "$behaviour": BEHAVIOUR,
    }
    empty = []
    for source, exprs in expressions().items():
        for expr in exprs:
            if source == "rules" or expr.startswith("label_values"):
                continue
            for var, value in variables.items():
                expr = expr.replace(var, value)
            if not prom.query(expr):  # a PromQL error raises in prom.api
                empty.append(expr)
    # Rates and quantiles may still be empty a few seconds after start; levels may not.
    assert all("rate(" in e or "rate5m" in e or "p95" in e for e in empty), empty
    board = dashboards()["saewatch-comparison.json"]
    (up_table,) = [p for p in board["panels"] if p["title"] == "More frequent in $candidate"]
    expr = up_table["targets"][0]["expr"]
    for var, value in variables.items():
        expr = expr.replace(var, value)
    rows = {int(r["metric"]["rank"]): r["metric"] for r in prom.query(expr)}
    assert sorted(rows) == list(range(1, 11))
    assert rows[1]["feature"] == str(UP[0][0]) and rows[1]["label"] == UP[0][1]


def _previews_render(prom: PrometheusServer, tmp_path: Path) -> None:
    """dashboards/preview.py draws both boards from the live data (the README's pictures)."""
    spec = importlib.util.spec_from_file_location("preview", DASHBOARDS_DIR / "preview.py")
    assert spec is not None and spec.loader is not None
    preview = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preview)
    client = preview.Prometheus(prom.url)
    chosen = {
        "model_id": MODEL_ID,
        "field": "response",
        "kind": "versions",
        "baseline": BASELINE,
        "candidate": CANDIDATE,
    }
    for name, board in dashboards().items():
        out = tmp_path / name.replace(".json", ".png")
        used = preview.render(board, client, out, 60.0, chosen if "comparison" in name else {})
        assert out.read_bytes()[:4] == b"\x89PNG"
        # The behaviours board's variable is filled from the data, as Grafana does.
        expected = {"behaviour": BEHAVIOUR} if "behaviours" in name else {}
        assert used == (chosen if "comparison" in name else expected)
    board = dashboards()["saewatch-comparison.json"]
    (up_table,) = [p for p in board["panels"] if p["title"] == "More frequent in $candidate"]
    header, rows = preview.table_rows(up_table, client, chosen)
    assert header[:3] == ["rank", "feature", "label"]
    assert [r[2] for r in rows[:2]] == [UP[0][1], UP[1][1]]


def test_scrape_with_bearer_token(exporter: ExporterFactory, prometheus: StartPrometheus) -> None:
    ex = exporter(report=drift_report(), bearer_token="prom-token")
    prom = prometheus([ex.target], bearer_token="prom-token")
    up = prom.wait_until(lambda: prom.query('up{job="saewatch"} == 1'), 60, "a successful scrape")
    assert up[0]["metric"]["instance"] == ex.target
    score = prom.wait_until(
        lambda: prom.query(f'saewatch_comparison_drift_score{{candidate="{CANDIDATE}"}}'),
        30,
        "the drift score",
    )
    assert float(score[0]["value"][1]) == 7.85
