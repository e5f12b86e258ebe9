"""The feature route and page: the feature's card joined with what the live state view knows."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from export.drift_reports import AT, BASELINE, CANDIDATE, MODEL_ID, drift_report, outputs
from export.export_harness import ExporterFactory
from export.http_helpers import fetch
from saewatch.config import StateSettings
from saewatch.export.web.http import CSP
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes
from saewatch.models.cards import (
    CardContext,
    CardNeighbour,
    FeatureCard,
    FeatureCards,
    TokenCount,
)
from saewatch.state.monitor import MonitorState
from saewatch.views import StateView

D_SAE = 4096
BOLD, OTHER = 1412, 377
DOCS = 40


def _cards() -> FeatureCards:
    context = CardContext(tokens=("##", " Step", " 1", ":", " **", "Pre", "heat", "**"),
                          activations=(0.0, 0.0, 0.0, 0.0, 3.2, 1.1, 0.0, 0.4))
    bold = FeatureCard(
        feature=BOLD, label="** (heading · step)", density=0.0123, fired=3_700, documents=410,
        max_activation=4.0, top_tokens=(TokenCount(token=" **", count=3_000, share=0.81),),
        contexts=(context,), neighbours=(CardNeighbour(feature=OTHER, npmi=0.61, count=212),))
    other = FeatureCard(feature=OTHER, label="numbered list", density=0.02)
    return FeatureCards(sae_id="test-sae", d_sae=D_SAE, corpus="test corpus", cards=[bold, other])


def _batch(version: str, offset: int) -> FeatureBatch:
    texts = list(outputs(version)[:DOCS])
    rows = [[BOLD] if "**" in t else [] for t in texts]
    events = tuple(
        LLMEvent(event_id=f"{version}-{i}", timestamp=AT + timedelta(seconds=offset + i),
                 model_id=MODEL_ID, model_version=version, prompt=f"instruction {i}",
                 response=t)
        for i, t in enumerate(texts))
    return FeatureBatch(
        encoder_id="rules-test", d_sae=D_SAE, events=events,
        prompt=SparseCodes.from_rows([[] for _ in texts], [[] for _ in texts]),
        response=SparseCodes.from_rows(rows, [[2.0] * len(r) for r in rows],
                                       n_tokens=[100] * len(texts)))


@pytest.fixture(scope="module")
def view() -> StateView:
    state = MonitorState(StateSettings(retrieval_capacity=500, examples_per_feature=3))
    state.update(_batch(BASELINE, 0))
    state.update(_batch(CANDIDATE, 1_000))
    return state.view()


def _bold_share(version: str) -> float:
    texts = outputs(version)[:DOCS]
    return sum("**" in t for t in texts) / DOCS


def test_the_api_joins_the_card_and_the_live_share(exporter: ExporterFactory,
                                                   view: StateView) -> None:
    ex = exporter(cards=_cards())
    ex.holder.publish(drift_report(), view)
    body = fetch(f"{ex.url}/api/v1/features/{BOLD}").json()
    assert body["label"] == "markdown bold section headings"  # the report's label wins
    card = body["card"]
    assert card["label"] == "** (heading · step)" and card["density"] == 0.0123
    assert card["contexts"][0]["activations"][4] == 3.2
    assert card["neighbours"] == [{"feature": OTHER, "npmi": 0.61, "count": 212}]
    live = {f["model_version"]: f for f in body["frequencies"]
            if f["field"] == "response" and f["window"] == "all"}
    for version in (BASELINE, CANDIDATE):
        assert live[version]["documents"] == DOCS
        assert live[version]["frequency"] == pytest.approx(_bold_share(version))


def test_without_a_view_the_card_alone_answers(exporter: ExporterFactory) -> None:
    ex = exporter(cards=_cards())
    body = fetch(f"{ex.url}/api/v1/features/{OTHER}").json()
    assert body["label"] == "numbered list" and body["frequencies"] == []
    assert body["card"]["feature"] == OTHER
    no_card = fetch(f"{ex.url}/api/v1/features/5")
    assert no_card.status == 503  # neither a card nor a view
    beyond = fetch(f"{ex.url}/api/v1/features/{D_SAE}")
    assert beyond.status == 404 and "4096 features" in beyond.json()["detail"]


def test_without_cards_the_route_is_the_live_detail(exporter: ExporterFactory,
                                                    view: StateView) -> None:
    ex = exporter()
    ex.holder.publish(drift_report(), view)
    body = fetch(f"{ex.url}/api/v1/features/{BOLD}").json()
    assert body["card"] is None and body["frequencies"]


def test_the_page_marks_where_the_feature_fires(exporter: ExporterFactory,
                                                view: StateView) -> None:
    ex = exporter(cards=_cards())
    ex.holder.publish(drift_report(), view)
    page = fetch(f"{ex.url}/features/{BOLD}")
    assert page.status == 200
    assert page.headers["content-security-policy"] == CSP
    marked = re.findall(r'<span class="tok fires[^"]*" style="[^"]*" '
                        r'title="activation ([0-9.]+)">([^<]*)</span>', page.text)
    assert marked == [("3.20", " **"), ("1.10", "Pre"), ("0.40", "**")]
    assert '<span class="tok">heat</span>' in page.text
    assert f'href="/features/{OTHER}"' in page.text
    assert "numbered step-by-step lists" in page.text  # the neighbour's label, report first
    for version in (BASELINE, CANDIDATE):
        assert f"{100 * _bold_share(version):.1f}%" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing external


def test_the_page_of_an_unknown_feature_says_so(exporter: ExporterFactory) -> None:
    ex = exporter(cards=_cards())
    page = fetch(f"{ex.url}/features/{D_SAE + 1}")
    assert page.status == 404 and "Nothing is known about feature" in page.text


def test_every_finding_of_the_report_links_to_its_feature_page(exporter: ExporterFactory) -> None:
    report = drift_report()
    ex = exporter(report=report)
    page = fetch(ex.url + "/").text
    features = {d.feature for r in report.comparisons for d in (*r.top_up, *r.top_down)}
    assert features
    for feature in features:
        assert f'<a href="/features/{feature}"><span class="fid">#{feature}</span></a>' in page


def test_the_page_renders_in_headless_chromium(exporter: ExporterFactory, tmp_path: Path) -> None:
    from export.test_export_report_page import chromium

    ex = exporter(cards=_cards())
    dom = chromium(tmp_path, "--dump-dom", f"{ex.url}/features/{BOLD}").stdout.decode()
    assert "Top-activating contexts" in dom and 'title="activation 3.20"' in dom
    shot = tmp_path / "feature.png"
    chromium(tmp_path, "--window-size=1200,1400", f"--screenshot={shot}",
             f"{ex.url}/features/{BOLD}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
