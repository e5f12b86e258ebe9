"""Diffs on real encoded AlpacaEval responses (slow: encodes on first run, then cached).

Only what ships with the project: the demo sample's claude-2.1 and claude-2.1_concise, all 805
prompts (the pairs of the shared corpus — gpt4 → verbose, the DPO fine-tune — are measured by
``make bench-detect``, docs/BENCHMARKS.md). Version pairs use disjoint prompt halves; A/A: one
model's responses split in two. Codes are cached under ``~/.cache/saewatch/codes/<encoder
key>/`` (see ``benchmarks/quality/alpaca_codes.py``); a cold cache encodes the 1,610 responses
once (a few minutes on 2 cores), shared with tests/diff/test_length.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.quality.alpaca_codes import N_ALPACA, CodesCache, as_batch, halves
from saewatch.config import ComparisonSpec, DiffSettings, StateSettings
from saewatch.diff.compare import compare
from saewatch.diff.report import build_report
from saewatch.encode.default import default_labels_path
from saewatch.models import ComparisonKey, FeatureCounts, SparseCodes
from saewatch.state.monitor import MonitorState

pytestmark = pytest.mark.slow

SETTINGS = DiffSettings(min_documents=100)
AA_SEEDS = (1, 2, 3)


PAIR = ("claude-2.1", "claude-2.1_concise")
MODELS = PAIR
CHOSEN = np.arange(N_ALPACA)


@pytest.fixture(scope="module")
def codes() -> dict[str, tuple[SparseCodes, str, int]]:
    cache = CodesCache()
    return {m: cache.codes(m, CHOSEN) for m in MODELS}


def counts(c: SparseCodes, d_sae: int, version: str) -> FeatureCounts:
    fired = np.bincount(c.indices, minlength=d_sae)
    act = np.bincount(c.indices, weights=c.values.astype(np.float64), minlength=d_sae)
    return FeatureCounts(model_id="alpaca_eval", model_version=version, field="response",
                         n_documents=len(c), fired=fired, activation_sum=act)


def key(a: str, b: str) -> ComparisonKey:
    return ComparisonKey(model_id="alpaca_eval", field="response", baseline=a, candidate=b)


def test_aa_splits_give_no_significant_features_and_no_alarm(codes: dict) -> None:
    total_significant = 0
    for model in MODELS:
        c, _, d = codes[model]
        for seed in AA_SEEDS:
            first, second = halves(len(c), seed)
            r = compare(key("a", "b"), counts(c.take(first), d, "a"),
                        counts(c.take(second), d, "b"), SETTINGS)
            assert r.verdict == "no_drift" and not r.sequential_alarm, (model, seed, r.message)
            assert r.drift_score == 0.0
            assert r.n_significant <= 1
            total_significant += r.n_significant
    # BH bounds the false discovery rate at 5%: under A/A about 1 comparison in 20 may carry one
    # false discovery; 18 comparisons x 4,096 features give at most a handful.
    assert total_significant <= 3


def test_aa_stream_looked_at_every_ten_events_never_alarms(codes: dict) -> None:
    for model in MODELS:
        c, _, d = codes[model]
        first, second = halves(len(c), 7)
        for n in range(10, len(first) + 1, 10):
            r = compare(key("a", "b"), counts(c.take(first[:n]), d, "a"),
                        counts(c.take(second[:n]), d, "b"), DiffSettings(min_documents=10))
            assert not r.sequential_alarm, (model, n, r.message)


def test_the_concise_pair_differs_clearly(codes: dict) -> None:
    baseline, candidate = PAIR
    (ca, _, d), (cb, _, _) = codes[baseline], codes[candidate]
    first, second = halves(len(ca), 0)
    r = compare(key(baseline, candidate), counts(ca.take(first), d, baseline),
                counts(cb.take(second), d, candidate), SETTINGS)
    assert r.verdict == "drift" and r.sequential_alarm and r.drift_score > 0.1, r.message
    assert r.n_significant >= 10
    assert len(r.top_up) + len(r.top_down) >= 10
    assert all(x.q_value < 0.05 for x in (*r.top_up, *r.top_down))
    aa = compare(key("a", "b"), counts(ca.take(first), d, "a"),
                 counts(ca.take(second), d, "b"), SETTINGS)
    assert r.divergence > aa.divergence


def test_report_through_monitor_state_has_labels_and_real_examples(codes: dict) -> None:
    from saewatch.datasets import read_alpaca
    from saewatch.encode.labels import load_labels

    baseline, candidate = PAIR
    (ca, encoder_id, d), (cb, _, _) = codes[baseline], codes[candidate]
    chosen = CHOSEN
    first, second = halves(len(ca), 0)
    state = MonitorState(StateSettings(retrieval_capacity=1_000))
    for model, c, rows in ((baseline, ca, first), (candidate, cb, second)):
        texts = {r.index: r.output for r in read_alpaca(model)}
        state.update(as_batch(c.take(rows), model, model, chosen[rows].tolist(), encoder_id,
                              d, texts=[texts[int(i)] for i in chosen[rows]]))
    labels = {f.feature: f.label for f in load_labels(default_labels_path(), d).features}
    spec = ComparisonSpec(model_id="alpaca_eval", baseline=baseline, candidate=candidate)
    report = build_report(state.view(),
                          SETTINGS.model_copy(update={"comparisons": [spec],
                                                      "window_comparisons": False}),
                          labels=labels)
    result = report.comparisons[0]
    assert result.key.slug == f"alpaca_eval/response/{baseline}..{candidate}"
    assert result.verdict == "drift"
    top = (result.top_up or result.top_down)[0]
    assert top.examples_candidate or top.examples_baseline
    example = (top.examples_candidate or top.examples_baseline)[0]
    assert len(example.text) > 20 and example.activation > 0
    assert any(x.label for x in (*result.top_up, *result.top_down))
