"""The demo's stream (canary or release order, disjoint prompts) and its status line."""

from __future__ import annotations

from datetime import UTC, datetime

from saewatch.demo import DEMO_MODEL_ID, DemoPlan, demo_events, status_line
from saewatch.models import DriftReport, VersionCount


def test_canary_interleaves_the_versions_on_disjoint_prompts() -> None:
    events = demo_events(DemoPlan("claude-2.1", "claude-2.1_concise", 50))
    assert len(events) == 100
    assert [e.model_version for e in events[:6]] == ["v1", "v2"] * 3
    v1 = [e for e in events if e.model_version == "v1"]
    v2 = [e for e in events if e.model_version == "v2"]
    assert len(v1) == len(v2) == 50
    prompts = {e.prompt for e in v1}
    assert not prompts & {e.prompt for e in v2}  # never identical traffic
    assert all(e.model_id == DEMO_MODEL_ID for e in events)
    assert v1[0].timestamp == v2[0].timestamp  # one clock for both sides


def test_release_sends_every_baseline_event_first() -> None:
    events = demo_events(DemoPlan("claude-2.1", "claude-2.1_concise", 30, arrival="release"))
    assert [e.model_version for e in events] == ["v1"] * 30 + ["v2"] * 30
    assert events[30].timestamp >= events[29].timestamp
    # The same prompts per side as the canary order, only the arrival differs.
    canary = demo_events(DemoPlan("claude-2.1", "claude-2.1_concise", 30))
    assert sorted(e.event_id for e in events) == sorted(e.event_id for e in canary)


def test_status_line_shows_both_sides_as_they_grow() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    report = DriftReport(generated_at=at, versions=(
        VersionCount(model_id=DEMO_MODEL_ID, model_version="v1", field="response", documents=41),
        VersionCount(model_id=DEMO_MODEL_ID, model_version="v2", field="response", documents=39),
        VersionCount(model_id=DEMO_MODEL_ID, model_version="v1", field="prompt", documents=41),
        VersionCount(model_id="other", model_version="v2", field="response", documents=7),
    ))
    line = status_line(61.4, 80, 600, report, None, 100)
    assert line.startswith("[   61s] [###.................]  80/600 events")
    assert "v1 41 / v2 39 responses" in line and line.endswith("waiting for both sides")



def test_status_line_and_verdict_name_the_top_descriptor_finding() -> None:
    from export.test_export_descriptors import HEADLINE, concise_report

    from saewatch.demo import describe, status_line

    report = concise_report()
    result = report.comparisons[0]
    line = status_line(30, 805, 805, report, result, 100)
    assert line.endswith(f"drift: {HEADLINE}")
    text = describe(result)
    assert text.splitlines()[2] == f"    {HEADLINE}"
    assert text.index("text descriptors") < text.index("more frequent in v2")
