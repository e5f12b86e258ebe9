"""Watched behaviours on the HTTP port: the JSON routes and the report page's section."""

from __future__ import annotations

from export.drift_reports import BASELINE, BEHAVIOUR, CANDIDATE, drift_report
from export.export_harness import ExporterFactory
from export.http_helpers import fetch

TOKEN = "s3cret"


def test_behaviour_routes_answer_behind_the_token(exporter: ExporterFactory) -> None:
    ex = exporter(report=drift_report(), bearer_token=TOKEN)
    assert fetch(ex.url + "/api/v1/behaviours").status == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    listed = fetch(ex.url + "/api/v1/behaviours", good).json()
    assert [b["name"] for b in listed["items"]] == [BEHAVIOUR]
    one = fetch(ex.url + f"/api/v1/behaviours/{BEHAVIOUR}", good).json()
    (change,) = one["comparisons"]
    assert (change["baseline"], change["candidate"], change["alarm"]) == (BASELINE, CANDIDATE,
                                                                          True)
    assert {(s["model_version"], s["window"]): s["flagged"] for s in one["shares"]}[
        (CANDIDATE, "all")] == 20
    missing = fetch(ex.url + "/api/v1/behaviours/nothing", good)
    assert missing.status == 404 and "GET /api/v1/behaviours" in missing.json()["detail"]


def test_example_text_stays_home_without_snippets(exporter: ExporterFactory) -> None:
    ex = exporter(report=drift_report(), serve_snippets=False)
    one = fetch(ex.url + f"/api/v1/behaviours/{BEHAVIOUR}").json()
    assert one["examples"] == [] and one["features"] == [17, 904]
    assert "sorry for the confusion" not in fetch(ex.url + "/").text


def test_the_report_page_shows_each_behaviour(exporter: ExporterFactory) -> None:
    page = fetch(exporter(report=drift_report()).url + "/").text
    assert '<section id="behaviours">' in page and f'id="b-{BEHAVIOUR}"' in page
    assert "I&#x27;m so sorry for the confusion." in page
    assert 'href="/features/17"' in page and "+4.0 points" in page and "alarm" in page
    assert "5.0% (3.0–7.0)" in page
