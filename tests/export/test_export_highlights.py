"""Highlighted examples end to end: real AlpacaEval responses encoded by a real (tiny, random)
encoder, folded into the real state, served from its view: the API's example objects carry the
peak window with highlight spans inside its text, and the report and feature pages mark them."""

from __future__ import annotations

import html
from datetime import timedelta
from pathlib import Path

import pytest

from export.drift_reports import AT, BASELINE, CANDIDATE, MODEL_ID, drift_report, outputs
from export.export_harness import Exporter, ExporterFactory
from export.http_helpers import fetch
from saewatch.config import EncodeSettings, StateSettings
from saewatch.export.web.marks import marked_window
from saewatch.models import DriftReport, ExampleWindow, Highlight, LLMEvent, Snippet
from saewatch.state.monitor import MonitorState
from saewatch.views import StateView
from tests.support.encode import tiny_encoder

DOCS = 24
HOOK = "blocks.1.hook_resid_post"


def _events(version: str, offset_s: int) -> list[LLMEvent]:
    return [LLMEvent(event_id=f"{version}-{i}", timestamp=AT + timedelta(seconds=offset_s + i),
                     model_id=MODEL_ID, model_version=version, prompt=f"instruction {i}",
                     response=text) for i, text in enumerate(outputs(version)[:DOCS])]


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {e.event_id: e.response for v in (BASELINE, CANDIDATE) for e in _events(v, 0)}


@pytest.fixture(scope="module")
def view() -> StateView:
    encoder = tiny_encoder(HOOK, EncodeSettings(device="cpu", precision="fp32",
                                                max_tokens_per_text=64))
    state = MonitorState(StateSettings(retrieval_capacity=1_000, examples_per_feature=3))
    for version, offset in ((BASELINE, 0), (CANDIDATE, 10_000)):
        events = _events(version, offset)
        for start in range(0, DOCS, 8):
            state.update(encoder.encode(events[start : start + 8]))
    return state.view()


def _feature(view: StateView) -> int:
    """A feature with examples in both versions."""
    for j in range(256):
        if all(view.examples(j, MODEL_ID, v, "response", 3) for v in (BASELINE, CANDIDATE)):
            return j
    raise AssertionError("no feature fired in both versions")


def _report(view: StateView, feature: int) -> DriftReport:
    """The hand-built drift report, its strongest change showing the state's real examples."""
    report = drift_report()
    result = report.comparisons[0]
    lead = result.top_up[0].model_copy(update={
        "feature": feature,
        "examples_baseline": tuple(view.examples(feature, MODEL_ID, BASELINE, "response", 2)),
        "examples_candidate": tuple(view.examples(feature, MODEL_ID, CANDIDATE, "response", 2))})
    result = result.model_copy(update={"top_up": (lead, *result.top_up[1:])})
    return report.model_copy(update={"comparisons": (result, *report.comparisons[1:])})


def _serve(exporter: ExporterFactory, view: StateView) -> tuple[Exporter, int]:
    feature = _feature(view)
    ex = exporter()
    ex.holder.publish(_report(view, feature), view)
    return ex, feature


def test_api_examples_carry_highlight_spans_inside_the_text(
    exporter: ExporterFactory, view: StateView, texts: dict[str, str]
) -> None:
    ex, feature = _serve(exporter, view)
    query = f"model_id={MODEL_ID}&model_version={CANDIDATE}&field=response"
    items = fetch(f"{ex.url}/api/v1/features/{feature}/examples?{query}").json()["items"]
    assert items
    for item in items:
        window = item["window"]
        assert window is not None and window["highlights"]
        text, at = window["text"], window["offset"]
        assert texts[item["event_id"]][at : at + len(text)] == text  # a piece of the event
        for h in window["highlights"]:
            assert 0 <= h["start"] < h["end"] <= len(text) and h["activation"] > 0
        top = max(h["activation"] for h in window["highlights"])
        assert top == pytest.approx(item["activation"], rel=1e-3)  # the peak is marked
    detail = fetch(f"{ex.url}/api/v1/features/{feature}").json()
    assert all(s["window"]["highlights"] for s in detail["examples"])


def test_openapi_documents_the_highlights(exporter: ExporterFactory, view: StateView) -> None:
    ex, _ = _serve(exporter, view)
    schemas = fetch(f"{ex.url}/api/openapi.json").json()["components"]["schemas"]
    assert {"start", "end", "activation"} <= set(schemas["Highlight"]["properties"])
    assert "highlights" in schemas["ExampleWindow"]["properties"]
    assert "window" in schemas["Snippet"]["properties"]


def _marked(s: Snippet) -> list[str]:
    assert s.window is not None
    return [html.escape(s.window.text[h.start : h.end].strip() or s.window.text[h.start : h.end])
            for h in s.window.highlights]


def test_report_and_feature_pages_mark_the_firing_tokens(
    exporter: ExporterFactory, view: StateView
) -> None:
    ex, feature = _serve(exporter, view)
    page = fetch(ex.url + "/").body.decode()
    best = view.examples(feature, MODEL_ID, BASELINE, "response", 1)[0]
    assert best.window is not None
    peak = max(best.window.highlights, key=lambda h: h.activation)
    peak_text = html.escape(best.window.text[peak.start : peak.end].strip())  # blanks outside
    assert (f'title="activation {peak.activation:.2f}">{peak_text}</mark>') in page
    assert '<mark class="fires peak"' in page
    for token in _marked(best):
        assert f">{token}</mark>" in page
    feature_page = fetch(f"{ex.url}/features/{feature}").body.decode()
    assert "Live examples" in feature_page and '<mark class="fires peak"' in feature_page


def test_pages_and_api_keep_text_private_with_snippets_off(
    exporter: ExporterFactory, view: StateView
) -> None:
    feature = _feature(view)
    ex = exporter(serve_snippets=False)
    ex.holder.publish(_report(view, feature), view)
    assert "<mark" not in fetch(ex.url + "/").body.decode()
    assert fetch(f"{ex.url}/api/v1/features/{feature}").json()["examples"] == []


def test_marks_escape_text_and_skip_spans_that_do_not_fit() -> None:
    window = ExampleWindow(text="<script>x</script> ok", offset=0, highlights=(
        Highlight(start=0, end=8, activation=1.0), Highlight(start=4, end=9, activation=2.0),
        Highlight(start=18, end=99, activation=0.5)))
    out = marked_window(window, 2.0)
    assert "<script>" not in out and "&lt;script&gt;</mark>x&lt;/script&gt; ok" in out
    assert out.count("<mark") == 1 and 'title="activation 1.00"' in out  # overlap, overrun


def test_headless_chromium_shows_the_marks(
    exporter: ExporterFactory, view: StateView, tmp_path: Path
) -> None:
    from export.test_export_report_page import chromium

    ex, _ = _serve(exporter, view)
    dom = chromium(tmp_path, "--dump-dom", ex.url + "/").stdout.decode()
    assert '<mark class="fires peak"' in dom and 'title="activation ' in dom
