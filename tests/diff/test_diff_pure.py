"""build_report is a pure function of a StateView: one view, one report, whatever the state does."""

from __future__ import annotations

import numpy as np

from saewatch.config import ComparisonSpec, DiffSettings, StateSettings, WindowSettings
from saewatch.diff.report import build_report
from saewatch.models import FeatureBatch
from saewatch.state.monitor import MonitorState
from saewatch.state.testing import T0, make_batch

D_SAE = 64
SETTINGS = DiffSettings(min_documents=20, examples_per_side=2, top_k=5,
                        comparisons=[ComparisonSpec(model_id="m", baseline="v1", candidate="v3")])
STATE = StateSettings(retrieval_capacity=500, cluster_count=3, cluster_dims=8,
                      cluster_warmup_events=50, cooccurrence_top_n=16,
                      windows=WindowSettings(bucket_seconds=60, windows={"10m": 600}))
LABELS = {3: "lists", 7: "apologies"}


def batch(version: str, boosted: int, seed: int, start: int, n: int = 200) -> FeatureBatch:
    """``n`` events whose features fire at a common base rate, ``boosted`` much more often."""
    rng = np.random.default_rng(seed)
    freq = np.full(D_SAE, 0.1)
    freq[boosted] = 0.7
    rows = [np.flatnonzero(rng.random(D_SAE) < freq).tolist() for _ in range(n)]
    values = [rng.uniform(0.5, 4.0, len(r)).round(2).tolist() for r in rows]
    return make_batch(rows, D_SAE, version=version, values=values, start=start)


def drifting_state() -> MonitorState:
    state = MonitorState(STATE)
    state.update(batch("v1", boosted=3, seed=0, start=0))
    state.update(batch("v2", boosted=7, seed=1, start=1_000))
    return state


def test_one_view_gives_one_report() -> None:
    view = drifting_state().view(now=T0)
    first, second = build_report(view, SETTINGS, LABELS), build_report(view, SETTINGS, LABELS)
    assert first == second
    assert first.generated_at == T0 and all(c.computed_at == T0 for c in first.comparisons)
    latest = next(c for c in first.comparisons if c.key.kind == "latest")
    assert latest.verdict == "drift"
    assert {d.feature for d in latest.top_up} >= {7} and {d.feature for d in latest.top_down} >= {3}
    assert latest.top_up[0].examples_candidate and latest.top_up[0].label == "apologies"
    # The configured v1..v3 comparison names a version not seen yet: reported, not raised.
    missing = next(c for c in first.comparisons if c.key.candidate == "v3")
    assert missing.verdict == "insufficient_data" and "v3" in missing.message


def test_changing_the_state_after_the_view_changes_neither_the_view_nor_its_report() -> None:
    state = drifting_state()
    view = state.view(now=T0)
    report = build_report(view, SETTINGS, LABELS)
    fired = {v.model_version: view.counts("m", v.model_version, "response").fired.copy()
             for v in view.versions}
    # v2 turns back into v1, a v3 appears: every answer of the live state moves.
    state.update(batch("v2", boosted=3, seed=2, start=2_000, n=2_000))
    state.update(batch("v3", boosted=11, seed=3, start=5_000))
    assert build_report(view, SETTINGS, LABELS) == report
    for version, before in fired.items():
        np.testing.assert_array_equal(view.counts("m", version, "response").fired, before)
    now = build_report(state.view(now=T0), SETTINGS, LABELS)
    assert now != report
    assert next(c for c in now.comparisons if c.key.candidate == "v3").verdict == "drift"


def test_a_report_of_an_empty_view_lists_the_configured_comparisons() -> None:
    report = build_report(MonitorState(STATE).view(now=T0), SETTINGS)
    assert [(c.key.slug, c.verdict) for c in report.comparisons] == [
        ("m/response/v1..v3", "insufficient_data")]
    assert report.versions == () and report.clusters == ()
