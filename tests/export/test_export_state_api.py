"""Feature, examples and retrieval routes over the real state engine (MonitorState).

The state is fed real AlpacaEval responses of the drifting pair; their codes come from simple,
inspectable text rules (bold markup, numbered lists, recaps, brevity), so the expected answers can
be computed independently of saewatch. As in the app, the server answers from the frozen view
published with the report, never from the live state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from export.drift_reports import AT, BASELINE, CANDIDATE, MODEL_ID, drift_report, outputs
from export.export_harness import Exporter, ExporterFactory
from export.http_helpers import fetch
from saewatch.config import StateSettings
from saewatch.export import StateQueries
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes
from saewatch.state.monitor import MonitorState
from saewatch.views import StateView

D_SAE = 4096
DOCS_PER_VERSION = 200
BATCH = 50
RULES: dict[int, Callable[[str], bool]] = {
    1412: lambda t: "**" in t,  # "markdown bold section headings" in the drift report
    377: lambda t: re.search(r"^\s*1\.", t, re.MULTILINE) is not None,
    2950: lambda t: "summary" in t.lower() or "conclusion" in t.lower(),
    1204: lambda t: len(t) < 500,
}


def _codes(texts: list[str]) -> SparseCodes:
    rows = [sorted(f for f, rule in RULES.items() if rule(t)) for t in texts]
    values = [[1.0 + (len(t) % 7) / 7 for _ in r] for t, r in zip(texts, rows, strict=True)]
    return SparseCodes.from_rows(rows, values, n_tokens=[min(len(t) // 4, 256) for t in texts])


def _batches(version: str, offset_s: int) -> list[FeatureBatch]:
    texts = list(outputs(version)[:DOCS_PER_VERSION])
    batches = []
    for start in range(0, len(texts), BATCH):
        chunk = texts[start : start + BATCH]
        events = tuple(
            LLMEvent(
                event_id=f"{version}-{start + i}",
                timestamp=AT + timedelta(seconds=offset_s + start + i),
                model_id=MODEL_ID,
                model_version=version,
                prompt=f"instruction {start + i}",
                response=text,
            )
            for i, text in enumerate(chunk)
        )
        batches.append(
            FeatureBatch(
                encoder_id="rules-test",
                d_sae=D_SAE,
                events=events,
                prompt=SparseCodes.from_rows([[] for _ in chunk], [[] for _ in chunk]),
                response=_codes(chunk),
            )
        )
    return batches


def _expected(version: str, *features: int) -> set[str]:
    texts = outputs(version)[:DOCS_PER_VERSION]
    return {f"{version}-{i}" for i, t in enumerate(texts) if all(RULES[f](t) for f in features)}


@pytest.fixture(scope="module")
def state() -> MonitorState:
    monitor = MonitorState(StateSettings(retrieval_capacity=1_000, examples_per_feature=5))
    for batch in [*_batches(BASELINE, 0), *_batches(CANDIDATE, 10_000)]:
        monitor.update(batch)
    return monitor


@pytest.fixture(scope="module")
def view(state: MonitorState) -> StateView:
    return state.view()


def serving(exporter: ExporterFactory, view: StateView, **web: Any) -> Exporter:
    """An exporter wired as the app wires it: no state, a (report, view) pair in the holder."""
    ex = exporter(**web)
    ex.holder.publish(drift_report(), view)
    return ex


def test_the_state_engine_and_its_view_satisfy_the_protocol(
    state: MonitorState, view: StateView
) -> None:
    assert isinstance(state, StateQueries) and isinstance(view, StateQueries)


def test_feature_detail(exporter: ExporterFactory, view: StateView) -> None:
    ex = serving(exporter, view)
    detail = fetch(ex.url + "/api/v1/features/1412").json()
    assert detail["feature"] == 1412
    assert detail["label"] == "markdown bold section headings"  # from the latest report
    freq = {
        (f["model_version"], f["window"]): f
        for f in detail["frequencies"]
        if f["field"] == "response"
    }
    for version in (BASELINE, CANDIDATE):
        overall = freq[(version, "all")]
        assert overall["documents"] == DOCS_PER_VERSION
        assert overall["fired"] == len(_expected(version, 1412))
    # The verbose rewrite uses bold markup more often: the real behavioural change.
    assert freq[(CANDIDATE, "all")]["frequency"] > freq[(BASELINE, "all")]["frequency"]
    fired = _expected(BASELINE, 1412) | _expected(CANDIDATE, 1412)
    assert detail["examples"]
    assert all(s["event_id"] in fired for s in detail["examples"])
    assert fetch(ex.url + f"/api/v1/features/{D_SAE + 10}").status == 404


def test_retrieval_by_features_and_version(exporter: ExporterFactory, view: StateView) -> None:
    ex = serving(exporter, view)
    url = f"{ex.url}/api/v1/retrieve?features=1412,377&mode=and&model_version={CANDIDATE}"
    result = fetch(url + "&limit=200").json()
    hits = result["items"]
    assert result["mode"] == "and" and result["features"] == [1412, 377]
    assert {h["event_id"] for h in hits} == _expected(CANDIDATE, 1412, 377)
    assert all(h["model_version"] == CANDIDATE for h in hits)
    assert all(set(h["matched_features"]) == {377, 1412} for h in hits)
    assert all(h["snippet"] for h in hits)
    either = fetch(url.replace("mode=and", "mode=or") + "&limit=200").json()["items"]
    assert len(either) > len(hits)
    assert len(fetch(url + "&limit=3").json()["items"]) == 3
    assert fetch(f"{ex.url}/api/v1/retrieve?features=").status == 400
    assert fetch(f"{ex.url}/api/v1/retrieve?features=1,x").status == 400


def test_examples_of_one_version(exporter: ExporterFactory, view: StateView) -> None:
    ex = serving(exporter, view)
    query = f"model_id={MODEL_ID}&model_version={BASELINE}&k=3"
    body = fetch(f"{ex.url}/api/v1/features/2950/examples?{query}").json()
    assert 1 <= len(body["items"]) <= 3
    assert {s["event_id"] for s in body["items"]} <= _expected(BASELINE, 2950)
    assert all(s["model_version"] == BASELINE for s in body["items"])
    missing = fetch(f"{ex.url}/api/v1/features/2950/examples?model_id={MODEL_ID}")
    assert missing.status == 400 and "'model_version' is required" in missing.json()["detail"]


def test_no_text_leaves_with_snippets_off(exporter: ExporterFactory, view: StateView) -> None:
    ex = serving(exporter, view, serve_snippets=False)
    detail = fetch(ex.url + "/api/v1/features/1412").json()
    assert detail["examples"] == [] and detail["frequencies"]
    hits = fetch(ex.url + "/api/v1/retrieve?features=1412").json()["items"]
    assert hits and all(h["snippet"] is None for h in hits)


def test_a_fixed_state_answers_like_the_published_view(
    exporter: ExporterFactory, state: MonitorState, view: StateView
) -> None:
    fixed = exporter(report=drift_report(), state=view)
    published = serving(exporter, view)
    for path in ("/api/v1/features/377", "/api/v1/retrieve?features=1412,2950&limit=50",
                 f"/api/v1/features/1204/examples?model_id={MODEL_ID}&model_version={CANDIDATE}"):
        assert fetch(fixed.url + path).json() == fetch(published.url + path).json()


def test_requests_never_wait_for_the_consumer(
    exporter: ExporterFactory, state: MonitorState, view: StateView
) -> None:
    ex = serving(exporter, view)
    paths = ["/api/v1/features/1412", "/api/v1/retrieve?features=1412,377&mode=and",
             f"/api/v1/features/2950/examples?model_id={MODEL_ID}&model_version={BASELINE}",
             "/api/v1/comparisons", "/api/v1/versions", "/api/v1/clusters", "/", "/metrics"]
    # The consumer holds the live state's lock (mid-update, or stuck): nothing served may need it.
    with state._lock:
        started = time.monotonic()
        statuses = [fetch(ex.url + path, timeout=5.0).status for path in paths]
        elapsed = time.monotonic() - started
    assert statuses == [200] * len(paths)
    assert elapsed < 2.0, f"{len(paths)} requests took {elapsed:.1f} s"


def test_a_newer_view_replaces_the_old_one(exporter: ExporterFactory, view: StateView) -> None:
    ex = serving(exporter, view)
    url = ex.url + "/api/v1/features/1412"
    assert fetch(url).json()["frequencies"]
    empty = MonitorState(StateSettings()).view()
    ex.holder.publish(drift_report(), empty)
    assert fetch(url).json()["frequencies"] == []
