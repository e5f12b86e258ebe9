"""Themes (co-firing features as one finding) through export: JSON API, /metrics, report page,
the demo's printout; from the hand-built verbose-rewrite report and from a real diff."""

from __future__ import annotations

from html import escape

import pytest
from prometheus_client import CollectorRegistry

from export.drift_reports import BASELINE, CANDIDATE, MODEL_ID, THEMES, drift_report, drift_result
from export.export_harness import ExporterFactory
from export.http_helpers import fetch
from saewatch.export import DriftReportCollector, ReportHolder
from saewatch.export.web.report import render_report
from saewatch.export.web.schemas import comparison_id
from saewatch.models import DriftReport

CMP = {"model_id": MODEL_ID, "field": "response", "baseline": BASELINE, "candidate": CANDIDATE,
       "kind": "versions"}


def test_api_serves_themes_before_the_features(exporter: ExporterFactory) -> None:
    report = drift_report()
    ex = exporter(report=report)
    cid = comparison_id(report.comparisons[0].key)
    body = fetch(f"{ex.url}/api/v1/comparisons/{cid}").json()
    keys = list(body)
    assert keys.index("descriptors") < keys.index("themes") < keys.index("features")
    assert body["comparison"]["n_significant_themes"] == 23
    assert [tuple(t["features"]) for t in body["themes"]] == [m for m, _, _ in THEMES]
    first = body["themes"][0]
    assert first["id"] == "up-1412" and first["direction"] == "up"
    assert first["labels"] == ["markdown bold section headings", "numbered step-by-step lists",
                               "nested bullet points"]
    assert first["effect"] == pytest.approx(0.41) and first["effect_basis"] == "any_member"
    assert (first["share_baseline"], first["share_candidate"]) == (0.38, 0.79)
    assert first["leader_effect"] == pytest.approx(0.58 - 0.21)
    assert len(first["examples_baseline"]) == len(first["examples_candidate"]) == 1
    spec = fetch(ex.url + "/api/openapi.json").json()
    assert "Theme" in spec["components"]["schemas"]
    assert "themes" in spec["components"]["schemas"]["ComparisonDiff"]["properties"]


def test_api_redacts_theme_examples_without_snippets(exporter: ExporterFactory) -> None:
    report = drift_report()
    ex = exporter(report=report, serve_snippets=False)
    body = fetch(f"{ex.url}/api/v1/comparisons/{comparison_id(report.comparisons[0].key)}").json()
    assert body["themes"] and all(t["examples_baseline"] == [] == t["examples_candidate"]
                                  for t in body["themes"])


def scrape(report: DriftReport, top_k: int = 10) -> CollectorRegistry:
    holder = ReportHolder()
    holder.publish(report)
    registry = CollectorRegistry()
    registry.register(DriftReportCollector(holder, top_k=top_k))
    return registry


def test_metrics_one_theme_series_per_rank_and_direction_with_its_leader() -> None:
    registry = scrape(drift_report())
    get = registry.get_sample_value
    assert get("saewatch_comparison_significant_themes", CMP) == 23
    up1 = CMP | {"direction": "up", "rank": "1"}
    assert get("saewatch_comparison_theme_effect",
               up1 | {"leader": "1412", "label": "markdown bold section headings"}) == 0.41
    assert get("saewatch_comparison_theme_features", up1) == 3
    down1 = CMP | {"direction": "down", "rank": "1"}
    assert get("saewatch_comparison_theme_effect",
               down1 | {"leader": "1204", "label": "one-sentence direct answers"}) == -0.33
    effects = [s for f in registry.collect() for s in f.samples
               if s.name == "saewatch_comparison_theme_effect"]
    assert len(effects) == len(THEMES)
    # Bounded by web.top_k per direction.
    capped = [s.labels for f in scrape(drift_report(), top_k=1).collect() for s in f.samples
              if s.name == "saewatch_comparison_theme_effect"]
    assert sorted((s["direction"], s["rank"], s["leader"]) for s in capped) == [
        ("down", "1", "1204"), ("up", "1", "1412")]


def test_report_page_shows_themes_between_descriptors_and_feature_tables() -> None:
    html = render_report(drift_report(), lambda key: [], show_snippets=True)
    section = html[html.index('<section class="comparison"'):]
    section = section[:section.index("</section>")]
    themes_at = section.index("<h3>Themes</h3>")
    assert themes_at < section.index("More frequent in")
    assert "23 groups of significant features" in section
    first = section[section.index('data-theme="up-1412"'):]
    first = first[:first.index("</li>")]
    assert escape("markdown bold section headings") in first
    assert all(f'<span class="fid">#{f}</span>' in first for f in (1412, 377, 88))
    assert "38.0% → 79.0% of documents with any member (+41.0 points)" in first
    assert "3 features" in first and first.count('<blockquote class="snippet">') == 2
    assert f"baseline · {BASELINE}" in first and f"candidate · {CANDIDATE}" in first
    assert 'data-theme="down-1204"' in section and "less: one-sentence direct answers" in section
    hidden = render_report(drift_report(), lambda key: [], show_snippets=False)
    assert 'data-theme="up-1412"' in hidden and "snippet" not in hidden.split("Themes")[1][:2000]


def test_a_theme_label_with_markup_stays_text() -> None:
    result = drift_result()
    theme = result.themes[0].model_copy(update={"labels": ("<b>bold</b> & co",)})
    report = drift_report().model_copy(update={"comparisons": (
        result.model_copy(update={"themes": (theme,)}),)})
    html = render_report(report, lambda key: [], show_snippets=True)
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html and "<b>bold</b>" not in html


def test_demo_prints_themes_after_the_descriptors_and_before_the_features() -> None:
    from saewatch.demo import describe

    text = describe(drift_result())
    lines = text.splitlines()
    at = lines.index("  themes (23 among the significant features):")
    assert lines[at + 1].split() == ["up", "38.0%", "->", "79.0%", "#1412", "+2", "markdown",
                                     "bold", "section", "headings", "·", "numbered",
                                     "step-by-step", "lists", "·", "nested", "bullet", "points"]
    assert sum(line.startswith("    up ") for line in lines) == 3
    assert sum(line.startswith("    down ") for line in lines) == 2
    assert at < text.index("more frequent in v2")


def test_a_real_diff_reaches_the_api_with_its_themes(exporter: ExporterFactory) -> None:
    from diff.test_themes import diff

    result, _, _ = diff()
    report = DriftReport(generated_at=result.computed_at, comparisons=(result,))
    ex = exporter(report=report)
    body = fetch(f"{ex.url}/api/v1/comparisons/{comparison_id(result.key)}").json()
    got = [(t["direction"], sorted(t["features"])) for t in body["themes"]]
    assert got == [("up", [1, 2, 3]), ("down", [7])]
    assert body["themes"][0]["examples_candidate"][0]["text"].startswith("response ")
