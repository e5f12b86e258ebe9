"""Length-explained features on the way out: the JSON API's feature schema and payload, and
the report page's mark."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic.json_schema import models_json_schema

from saewatch.export.web.report import render_report
from saewatch.export.web.schemas import ComparisonDiff, RankedFeature
from saewatch.models import ComparisonKey, ComparisonResult, DriftReport, FeatureDelta

AT = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
KEY = ComparisonKey(model_id="bot", field="response", baseline="v1", candidate="v2")


def delta(feature: int, explained: bool | None, p: float | None = None) -> FeatureDelta:
    return FeatureDelta(feature=feature, label=f"f{feature}", count_baseline=30,
                        count_candidate=10, freq_baseline=0.3, freq_candidate=0.1,
                        log_odds_ratio=-1.3, p_value=1e-6, q_value=1e-4, direction="down",
                        length_explained=explained, stratified_p=p,
                        stratified_odds_ratio=0.93 if p is not None else None)


def report() -> DriftReport:
    result = ComparisonResult(key=KEY, n_baseline=400, n_candidate=400, verdict="drift",
                              n_significant=3, computed_at=AT,
                              top_down=(delta(7, False, 1e-5), delta(9, None),
                                        delta(5, True, 0.41)))
    return DriftReport(generated_at=AT, comparisons=(result,))


def test_the_api_payload_and_schema_carry_the_length_assessment() -> None:
    ranked = [RankedFeature(rank=i, delta=d)
              for i, d in enumerate(report().comparisons[0].top_down, start=1)]
    payload = [json.loads(r.model_dump_json()) for r in ranked]
    assert [(p["delta"]["feature"], p["delta"]["length_explained"]) for p in payload] == [
        (7, False), (9, None), (5, True)]
    assert payload[2]["delta"]["stratified_p"] == 0.41
    assert payload[2]["delta"]["stratified_odds_ratio"] == 0.93
    _, defs = models_json_schema([(ComparisonDiff, "serialization")])
    fields = defs["$defs"]["FeatureDelta"]["properties"]
    assert {"length_explained", "stratified_p", "stratified_odds_ratio"} <= set(fields)
    assert "token length" in fields["length_explained"]["description"]


def test_the_report_page_marks_only_length_explained_features() -> None:
    page = render_report(report(), lambda key: [], show_snippets=False)
    assert page.count('class="length-mark"') == 1
    row = page[page.index('data-feature="5"'):]
    row = row[:row.index("</tr>")]
    assert ">length</span>" in row and "stratified p=0.41" in row
    assert "odds ratio 0.93 at equal length" in row
    assert '<th title="change accounted for by a change of answer length' in page
