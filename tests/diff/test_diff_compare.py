"""compare / plan / report: verdicts, ranking, examples, windows and A/A calibration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from saewatch.config import ComparisonSpec, DiffSettings
from saewatch.diff.compare import compare
from saewatch.diff.exceptions import CountsMismatchError
from saewatch.diff.plan import plan_comparisons, resolve_counts
from saewatch.diff.report import build_report
from saewatch.models import ComparisonKey, FeatureCounts, Snippet, TextField, VersionCount
from saewatch.views import StateView

KEY = ComparisonKey(model_id="m", field="response", baseline="v1", candidate="v2")
T = datetime(2026, 11, 20, tzinfo=UTC)


def counts(version: str, n: int, fired: np.ndarray, window: str = "all") -> FeatureCounts:
    return FeatureCounts(model_id="m", model_version=version, field="response", window=window,
                         n_documents=n, fired=np.asarray(fired, dtype=np.int64),
                         activation_sum=np.zeros(len(fired)))


def sample(rng: np.random.Generator, freq: np.ndarray, n: int) -> np.ndarray:
    return rng.binomial(n, freq)


class RecordingExamples:
    """An example source that names its snippets after the question and remembers it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, int]] = []

    def examples(self, feature: int, model_id: str, model_version: str, field: TextField,
                 k: int = 5) -> list[Snippet]:
        self.seen.append((feature, model_version, k))
        return [Snippet(event_id=f"{model_version}-{feature}", model_version=model_version,
                        activation=1.0, text="t")]


def test_insufficient_data_says_how_much_is_missing() -> None:
    r = compare(KEY, counts("v1", 50, [5, 5]), counts("v2", 500, [50, 5]), DiffSettings())
    assert r.verdict == "insufficient_data" and "50 baseline" in r.message
    assert r.top_up == () and not r.sequential_alarm


def test_counts_of_different_width_are_refused() -> None:
    with pytest.raises(CountsMismatchError):
        compare(KEY, counts("v1", 500, [5, 5]), counts("v2", 500, [5, 5, 5]), DiffSettings())


def test_real_change_is_found_ranked_and_illustrated() -> None:
    rng = np.random.default_rng(0)
    freq = rng.beta(0.5, 8, size=2000)
    up, down = freq.copy(), freq.copy()
    up[[10, 20]] = [0.6, 0.3]
    up[30] = 0.0
    examples = RecordingExamples()
    settings = DiffSettings(top_k=3, examples_per_side=1)
    r = compare(KEY, counts("v1", 3000, sample(rng, down, 3000)),
                counts("v2", 3000, sample(rng, up, 3000)), settings,
                labels={10: "lists"}, examples=examples, now=T)
    assert r.verdict == "drift" and r.sequential_alarm
    assert [d.feature for d in r.top_up][:2] == [10, 20] and r.top_up[0].label == "lists"
    assert 30 in [d.feature for d in r.top_down]
    top = r.top_up[0]
    assert top.direction == "up" and top.q_value < 0.05 and top.log_odds_ratio > 0
    assert top.examples_baseline[0].event_id == "v1-10"
    assert top.examples_candidate[0].event_id == "v2-10"
    assert (10, "v1", 1) in examples.seen and r.computed_at == T
    assert r.drift_score > 0.5 and r.divergence > 0


def test_aa_comparisons_give_no_significant_features_and_a_stable_low_score() -> None:
    rng = np.random.default_rng(1)
    freq = rng.beta(0.5, 8, size=4096)
    scores, significant, alarms = [], 0, 0
    for _ in range(20):
        r = compare(KEY, counts("v1", 400, sample(rng, freq, 400)),
                    counts("v2", 400, sample(rng, freq, 400)), DiffSettings())
        scores.append(r.drift_score)
        significant += r.n_significant
        alarms += r.sequential_alarm
        assert r.verdict in ("no_drift", "drift")
    assert alarms == 0
    assert significant <= 2  # BH at q < .05: ~5% of A/A runs may hold one false discovery
    assert max(scores) == 0.0  # the score only counts always-valid alarms


def test_plan_orders_versions_by_first_seen_and_dedupes() -> None:
    versions = [
        VersionCount(model_id="m", model_version="b", field="response", documents=10,
                     first_seen=T + timedelta(days=2)),
        VersionCount(model_id="m", model_version="a", field="response", documents=10,
                     first_seen=T + timedelta(days=1)),
        VersionCount(model_id="m", model_version="c", field="response", documents=10,
                     first_seen=T + timedelta(days=3)),
        VersionCount(model_id="n", model_version="x", field="response", documents=10),
    ]
    spec = ComparisonSpec(model_id="m", baseline="b", candidate="c", fields=["response", "prompt"])
    settings = DiffSettings(comparisons=[spec])
    slugs = [(k.slug, k.kind) for k in plan_comparisons(versions, settings, ["1h"])]
    assert slugs == [("m/response/b..c", "versions"), ("m/prompt/b..c", "versions"),
                     ("m/response/c..c@1h", "window"), ("n/response/x..x@1h", "window")]
    off = DiffSettings(auto_latest=False, window_comparisons=False)
    assert plan_comparisons(versions, off, ["1h"]) == []


def test_window_comparison_uses_disjoint_samples() -> None:
    key = ComparisonKey(model_id="m", field="response", baseline="v", candidate="v@1h",
                        kind="window")
    version = VersionCount(model_id="m", model_version="v", field="response", documents=1000)
    view = StateView(taken_at=T, windows=("all", "1h"), versions=(version,),
                     feature_counts=(counts("v", 1000, [300, 10]), counts("v", 200, [100, 2], "1h")))
    before, recent = resolve_counts(key, view)
    assert (before.n_documents, before.fired.tolist()) == (800, [200, 8])
    assert (recent.n_documents, recent.fired.tolist()) == (200, [100, 2])


def test_report_turns_missing_versions_into_insufficient_data() -> None:
    spec = ComparisonSpec(model_id="m", baseline="v1", candidate="v9")
    versions = [VersionCount(model_id="m", model_version="v1", field="response", documents=500)]
    view = StateView(taken_at=T, versions=versions, feature_counts=[counts("v1", 500, [50, 50])])
    report = build_report(view, DiffSettings(comparisons=[spec], window_comparisons=False))
    assert [(c.key.slug, c.verdict) for c in report.comparisons] == [
        ("m/response/v1..v9", "insufficient_data")]
    assert "v9" in report.comparisons[0].message and report.generated_at == T
