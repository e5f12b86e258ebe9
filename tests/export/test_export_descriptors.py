"""Text descriptors through export: JSON API, /metrics series and the report page, from a real
report (claude-2.1 -> claude-2.1_concise through MonitorState and build_report)."""

from __future__ import annotations

import random
from functools import cache
from html import escape

import pytest
from prometheus_client import CollectorRegistry

from export.export_harness import ExporterFactory
from export.http_helpers import fetch
from saewatch.config import ComparisonSpec, DiffSettings, StateSettings
from saewatch.datasets import alpaca_events
from saewatch.diff.report import build_report
from saewatch.export import DriftReportCollector, ReportHolder
from saewatch.export.web.report import render_report
from saewatch.export.web.schemas import comparison_id
from saewatch.models import N_DESCRIPTORS, DriftReport, FeatureBatch, SparseCodes
from saewatch.state.monitor import MonitorState

HEADLINE = "responses 58% shorter: median 195 -> 82 words"


@cache
def concise_report() -> DriftReport:
    rng = random.Random(0)
    cand = alpaca_events("claude-2.1_concise", version="v2", model_id="m")
    rng.shuffle(cand)
    cand = cand[: len(cand) // 2]
    taken = {e.event_id.rpartition(":")[2] for e in cand}
    base = [e for e in alpaca_events("claude-2.1", version="v1", model_id="m")
            if e.event_id.rpartition(":")[2] not in taken]
    state = MonitorState(StateSettings(retrieval_capacity=1_000))
    for events in (base, cand):
        for i in range(0, len(events), 64):
            chunk = events[i:i + 64]
            empty = SparseCodes.from_rows([[] for _ in chunk], [[] for _ in chunk])
            state.update(FeatureBatch(encoder_id="t", d_sae=8, events=tuple(chunk),
                                      prompt=empty, response=empty))
    settings = DiffSettings(auto_latest=False, window_comparisons=False,
                            comparisons=[ComparisonSpec(model_id="m", baseline="v1",
                                                        candidate="v2")])
    return build_report(state.view(), settings)


def test_the_report_leads_with_the_length_finding() -> None:
    assert concise_report().comparisons[0].headline == HEADLINE


def test_api_lists_the_headline_and_descriptors_before_features(
        exporter: ExporterFactory) -> None:
    report = concise_report()
    ex = exporter(report=report)
    listed = fetch(ex.url + "/api/v1/comparisons").json()
    assert listed["items"][0]["headline"] == HEADLINE
    cid = comparison_id(report.comparisons[0].key)
    body = fetch(f"{ex.url}/api/v1/comparisons/{cid}").json()
    keys = list(body)
    assert keys.index("descriptors") < keys.index("features")
    first = body["descriptors"][0]
    assert (first["descriptor"], first["moved"], first["direction"]) == ("words", True, "down")
    assert first["text"] == HEADLINE and len(body["descriptors"]) == N_DESCRIPTORS
    spec = fetch(ex.url + "/api/openapi.json").json()
    assert "DescriptorFinding" in spec["components"]["schemas"]


def test_metrics_are_one_series_per_version_field_and_descriptor() -> None:
    holder = ReportHolder()
    holder.publish(concise_report())
    registry = CollectorRegistry()
    registry.register(DriftReportCollector(holder))
    value = registry.get_sample_value
    words = {"model_id": "m", "model_version": "v1", "field": "response", "descriptor": "words"}
    # Medians are interpolated within 9%-wide buckets: within one word here.
    assert value("saewatch_descriptor_median", words) == pytest.approx(195, abs=1)
    assert value("saewatch_descriptor_median", words | {"model_version": "v2"}) == pytest.approx(
        82, abs=1)
    cmp = {"model_id": "m", "field": "response", "baseline": "v1", "candidate": "v2",
           "kind": "versions"}
    assert value("saewatch_comparison_descriptor_moved", cmp | {"descriptor": "words"}) == 1
    assert value("saewatch_comparison_descriptor_moved", cmp | {"descriptor": "tables"}) == 0
    effect = value("saewatch_comparison_descriptor_effect", cmp | {"descriptor": "words"})
    assert effect is not None and effect < -0.4
    medians = [s for f in registry.collect() for s in f.samples
               if s.name == "saewatch_descriptor_median"]
    assert len(medians) == 2 * 2 * N_DESCRIPTORS  # two versions x two fields x the fixed list


def test_report_page_says_the_finding_first() -> None:
    html = render_report(concise_report(), lambda key: [], show_snippets=True)
    said = escape(HEADLINE)
    assert said in html
    section = html[html.index('<section class="comparison"'):]
    assert section.index("Text descriptors") < section.index(said) < section.index(
        "More frequent in")
