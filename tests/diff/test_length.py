"""Length-aware feature diffs: the ring's token counts, the length-strata query, the CMH test
against statsmodels, and the ranking in ``compare`` on synthetic and real data."""

from __future__ import annotations

import time

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import StratifiedTable

from benchmarks.quality.alpaca_codes import N_ALPACA, CodesCache, as_batch, halves
from saewatch.config import ComparisonSpec, DiffSettings, StateSettings
from saewatch.demo import describe
from saewatch.diff.compare import compare
from saewatch.diff.length import (
    PROBE_EDGES,
    assess_length,
    choose_edges,
    length_tests,
    mantel_haenszel,
)
from saewatch.diff.report import build_report
from saewatch.models import ComparisonKey, ComparisonResult
from saewatch.state.exceptions import InvalidStrataError
from saewatch.state.monitor import MonitorState
from saewatch.state.retrieval import RetrievalIndex
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import make_batch

SHORT, LONG = (20, 60), (100, 129)  # token counts drawn from [lo, hi)
N_PER_SIDE = 400


def side_batch(rng: np.random.Generator, short_share: float,
               rise: float) -> tuple[list[list[int]], list[int]]:
    """Documents of one version: feature 1 is present mostly in short answers and feature 3
    in long ones, whatever the version (length only); feature 2 is present with probability
    0.2 + ``rise`` at every length; feature 4 at 0.3 everywhere."""
    rows, tokens = [], []
    for _ in range(N_PER_SIDE):
        short = rng.random() < short_share
        n = int(rng.integers(*(SHORT if short else LONG)))
        p = {1: 0.7 if short else 0.1, 2: 0.2 + rise, 3: 0.1 if short else 0.6, 4: 0.3}
        rows.append(sorted(f for f, q in p.items() if rng.random() < q))
        tokens.append(n)
    return rows, tokens


def concise_state(seed: int = 0) -> MonitorState:
    """v1 answers long three times in four, v2 ("concise") short three times in four."""
    rng = np.random.default_rng(seed)
    state = MonitorState(StateSettings(retrieval_capacity=2_000))
    start = 0
    for version, short_share, rise in (("v1", 0.25, 0.0), ("v2", 0.75, 0.2)):
        rows, tokens = side_batch(rng, short_share, rise)
        state.update(make_batch(rows, 8, version=version, start=start, n_tokens=tokens))
        start += len(rows)
    return state


SETTINGS = DiffSettings(min_documents=100, window_comparisons=False,
                        comparisons=[ComparisonSpec(model_id="m", baseline="v1", candidate="v2")])


def concise_result(state: MonitorState) -> ComparisonResult:
    return build_report(state.view(), SETTINGS).comparisons[0]


# --- the ring -----------------------------------------------------------------------------------


def test_length_strata_match_a_brute_force_count_over_the_live_ring() -> None:
    rng = np.random.default_rng(5)
    index = RetrievalIndex(capacity=250, max_features=4)
    docs: list[tuple[str, int, set[int]]] = []
    for b in range(6):
        version = ("v1", "v2", "v3")[b % 3]
        rows = [sorted(rng.choice(12, size=rng.integers(0, 7), replace=False).tolist())
                for _ in range(60)]
        values = [rng.uniform(0.1, 5, len(r)).tolist() for r in rows]
        tokens = rng.integers(0, 300, size=60).tolist()
        index.update(make_batch(rows, 12, version=version, values=values, start=60 * b,
                                n_tokens=tokens))
        kept = [set(np.array(r)[np.argsort(v)[::-1][:4]].tolist()) if r else set()
                for r, v in zip(rows, values, strict=True)]
        docs += [(version, t, k) for t, k in zip(tokens, kept, strict=True)]
    live = docs[-250:]
    edges, features = [50, 100, 200], [3, 0, 11]
    s = index.length_strata(features, "m", ["v2", "v1"], edges)
    assert s.versions == ("v2", "v1") and s.edges == tuple(edges) and s.n_strata == 4
    bounds = [0, *edges, 10**9]
    for v, version in enumerate(s.versions):
        for k in range(4):
            mine = [kept for ver, t, kept in live
                    if ver == version and bounds[k] <= t < bounds[k + 1]]
            assert s.n_documents[v, k] == len(mine)
            assert s.saturated[v, k] == sum(len(m) >= 4 for m in mine)
            assert s.present[v, k].tolist() == [sum(f in m for m in mine) for f in features]
    assert s.unknown.tolist() == [0, 0]
    frozen = index.frozen()
    index.update(make_batch([[3]] * 250, 12, version="v1", start=400, n_tokens=[7] * 250))
    assert frozen.length_strata(features, "m", ["v2", "v1"], edges).present.tolist() == (
        s.present.tolist())
    assert index.length_strata([3], "m", ["v1"], [10]).n_documents.tolist() == [[250, 0]]
    with pytest.raises(InvalidStrataError, match="increase strictly"):
        index.length_strata([3], "m", ["v1"], [10, 10])


def test_token_counts_survive_snapshot_restore_merge_and_the_snapshot_store(tmp_path) -> None:
    a = RetrievalIndex(capacity=4)
    a.update(make_batch([[1], [1], [2]], 4, n_tokens=[5, 50, 500]))
    restored = RetrievalIndex(capacity=4)
    restored.restore(a.snapshot())
    assert restored.snapshot()["tokens"]["response"].tolist() == [5, 50, 500]
    assert restored.length_strata([1], "m", ["v1"], [10, 100]).present.tolist() == [[[1], [1], [0]]]
    b = RetrievalIndex(capacity=4)
    b.update(make_batch([[1], [1]], 4, start=10, n_tokens=[60, 70]))
    a.merge(b)  # 5 events into a ring of 4: the oldest of a (5 tokens) is dropped
    assert a.snapshot()["tokens"]["response"].tolist() == [50, 500, 60, 70]
    assert a.length_strata([1], "m", ["v1"], [100]).n_documents.tolist() == [[3, 1]]
    # A snapshot from before the ring kept token counts: unknown, in no stratum.
    older = a.snapshot()
    del older["tokens"]
    a.restore(older)
    s = a.length_strata([1], "m", ["v1"], [100])
    assert s.n_documents.tolist() == [[0, 0]] and s.unknown.tolist() == [4]
    # Through the snapshot store (npz members and a JSON manifest) with the whole state.
    state = concise_state()
    store = SnapshotStore(tmp_path)
    store.save(state.snapshot(), {("llm-events", 0): 800})
    loaded = store.load_latest()
    assert loaded is not None
    again = MonitorState(state.settings)
    again.restore(loaded.state)
    edges = [60, 100]
    assert (again.view().length_strata([1, 2], "m", ["v1", "v2"], edges).present.tolist()
            == state.view().length_strata([1, 2], "m", ["v1", "v2"], edges).present.tolist())


# --- the statistics -----------------------------------------------------------------------------


def test_mantel_haenszel_agrees_with_statsmodels() -> None:
    rng = np.random.default_rng(0)
    n_a, n_b = rng.integers(5, 60, size=(2, 4))
    fa = rng.binomial(n_a, 0.3, size=(50, 4))
    fb = rng.binomial(n_b, 0.45, size=(50, 4))
    chi2, p, odds = mantel_haenszel(fa, n_a, fb, n_b)
    for i in range(50):
        table = np.array([[fb[i], n_b - fb[i]], [fa[i], n_a - fa[i]]], dtype=float)
        st = StratifiedTable(table)
        test = st.test_null_odds(correction=True)
        deviation = abs(np.sum(fb[i] - n_b * (fa[i] + fb[i]) / (n_a + n_b)))
        if deviation >= 0.5:  # statsmodels squares a negative corrected deviation
            assert chi2[i] == pytest.approx(test.statistic, rel=1e-9)
            assert p[i] == pytest.approx(test.pvalue, rel=1e-6, abs=1e-12)
        assert odds[i] == pytest.approx(st.oddsratio_pooled, rel=1e-9)


def test_strata_edges_are_pooled_quantiles_with_ties_kept_together() -> None:
    lengths = np.r_[np.full(30, 128), np.arange(10, 80)]  # a third cut at the budget
    hist = np.bincount(lengths, minlength=len(PROBE_EDGES) + 1)
    edges = choose_edges(np.stack([hist, np.zeros_like(hist)]), 5)
    assert edges == (29, 49, 69, 128)  # a value at a quantile goes above the edge
    assert choose_edges(np.zeros((2, 10), np.int64)) == ()
    assert choose_edges(np.bincount([0, 0, 0, 0, 7], minlength=10), 2) == ()  # no empty stratum


def test_too_few_ring_documents_or_one_version_are_not_assessed() -> None:
    view = concise_state().view()
    many = assess_length(view, "m", "response", ("v1", "v2"), [1, 2], 0.05, 100)
    assert many[1].explained is True and many[2].explained is False
    few = assess_length(view, "m", "response", ("v1", "v2"), [1, 2], 0.05, 500)
    assert {t.explained for t in few.values()} == {None}
    same = assess_length(view, "m", "response", ("v1", "v1"), [1], 0.05)
    assert same[1].explained is None
    assert assess_length(None, "m", "response", ("v1", "v2"), [1], 0.05)[1].explained is None
    # A feature the ring does not see change pooled (4: 30% on both sides) is not judged.
    strata = view.length_strata([4], "m", ["v1", "v2"], [60, 100])
    assert length_tests(strata, ("v1", "v2"), 0.05)[4].explained is None


# --- compare ------------------------------------------------------------------------------------


def test_a_length_only_change_is_marked_and_ranked_after_a_real_one() -> None:
    r = concise_result(concise_state())
    up = {d.feature: d for d in r.top_up}
    down = {d.feature: d for d in r.top_down}
    # Feature 1 moves most (+30 points, only because v2 is shorter); feature 2 less (+20
    # points at every length): 2 is listed first.
    assert up[1].freq_candidate - up[1].freq_baseline > up[2].freq_candidate - up[2].freq_baseline
    assert [d.feature for d in r.top_up] == [2, 1]
    assert up[1].length_explained is True and up[1].stratified_p > 0.05
    assert 0.7 < up[1].stratified_odds_ratio < 1.4
    assert up[2].length_explained is False and up[2].stratified_p < 1e-4
    assert 2.0 < up[2].stratified_odds_ratio < 4.0  # odds of 0.4 vs 0.2: 2.67
    assert down[3].length_explained is True
    assert r.themes  # themes are still formed from the same candidates


def test_window_comparisons_and_views_without_a_ring_are_not_assessed() -> None:
    state = concise_state()
    settings = SETTINGS.model_copy(update={"comparisons": [], "window_comparisons": True})
    windows = [c for c in build_report(state.view(), settings).comparisons
               if c.key.kind == "window"]
    assert all(d.length_explained is None for c in windows for d in (*c.top_up, *c.top_down))
    view = state.view()
    key = ComparisonKey(model_id="m", field="response", baseline="v1", candidate="v2")
    plain = compare(key, view.counts("m", "v1", "response"), view.counts("m", "v2", "response"),
                    SETTINGS)
    assert [d.feature for d in plain.top_up] == [1, 2]  # effect order, nothing assessed
    assert {d.length_explained for d in plain.top_up} == {None}


def test_the_length_assessment_is_cheap() -> None:
    rng = np.random.default_rng(1)
    index = RetrievalIndex(capacity=20_000)
    for b in range(20):
        rows = [sorted(rng.choice(2_000, size=48, replace=False).tolist()) for _ in range(1_000)]
        index.update(make_batch(rows, 2_000, version=("v1", "v2")[b % 2], start=1_000 * b,
                                n_tokens=rng.integers(5, 257, size=1_000).tolist()))
    frozen = index.frozen()
    features = list(range(0, 600, 10))  # 60 features
    assess_length(frozen, "m", "response", ("v1", "v2"), features, 0.05)
    began = time.perf_counter()
    for _ in range(5):
        assess_length(frozen, "m", "response", ("v1", "v2"), features, 0.05)
    per_call = (time.perf_counter() - began) / 5
    assert per_call < 0.25, per_call  # ~20-40 ms measured on 2 busy cores


def test_the_demo_printout_marks_length_explained_features() -> None:
    text = describe(concise_result(concise_state()))
    lines = text.splitlines()
    first = lines.index("  more frequent in v2:")
    assert lines[first + 1].startswith("    #2 ") and not lines[first + 1].endswith("(length)")
    assert lines[first + 2].startswith("    #1 ") and lines[first + 2].endswith("(length)")


# --- real data: the shipped sample, claude-2.1 -> claude-2.1_concise ---------------------------


@pytest.fixture(scope="module")
def concise_pair() -> tuple[ComparisonResult, ComparisonResult]:
    """Both versions of the demo sample on disjoint prompt halves (402/403 responses, codes
    cached like test_diff_real's), through a MonitorState whose ring holds them all: the
    comparison with the ring and, for the effect order alone, without it. ``top_k`` 50 lists
    every significant feature. A cold cache encodes the 1,610 responses once (~7 minutes on 2
    busy CPU cores; test_diff_real's 100 per side give a single significant feature)."""
    cache, chosen = CodesCache(), np.arange(N_ALPACA)
    pair = ("claude-2.1", "claude-2.1_concise")
    (ca, encoder_id, d), (cb, _, _) = (cache.codes(m, chosen) for m in pair)
    first, second = halves(len(ca), 0)
    state = MonitorState(StateSettings(retrieval_capacity=1_000))
    for model, c, rows in ((pair[0], ca, first), (pair[1], cb, second)):
        state.update(as_batch(c.take(rows), model, model, chosen[rows].tolist(), encoder_id, d))
    view = state.view()
    spec = ComparisonSpec(model_id="alpaca_eval", baseline=pair[0], candidate=pair[1])
    settings = DiffSettings(min_documents=100, comparisons=[spec], window_comparisons=False,
                            top_k=50)
    key = ComparisonKey(model_id="alpaca_eval", field="response", baseline=pair[0],
                        candidate=pair[1])
    plain = compare(key, view.counts("alpaca_eval", pair[0], "response"),
                    view.counts("alpaca_eval", pair[1], "response"), settings)
    return build_report(view, settings).comparisons[0], plain


@pytest.mark.slow
def test_concise_claude_loses_some_features_to_length_alone(concise_pair) -> None:
    """Measured (128-token codes, presence thresholds): 32 significant features (4 up, 28
    down), 5 of them explained by length, all down; 3 of those were among the 10 strongest
    downs by effect and give way to features that drop at equal length too."""
    result, plain = concise_pair
    deltas = [*result.top_up, *result.top_down]
    assert len(deltas) == result.n_significant >= 20
    assert all(d.length_explained is not None for d in deltas)  # the ring holds every event
    explained = [d for d in deltas if d.length_explained]
    assert len(explained) >= 0.1 * len(deltas)
    for d in explained:
        assert d.stratified_p is not None and d.stratified_p >= 0.05
        # Holding length fixed moves the odds ratio toward 1: length carried part of the change.
        assert d.stratified_odds_ratio is not None
        assert abs(np.log(d.stratified_odds_ratio)) < abs(d.log_odds_ratio)
    for deltas_ in (result.top_up, result.top_down):  # explained ones come last
        flags = [bool(d.length_explained) for d in deltas_]
        assert flags == sorted(flags)
    # The same features, the effect order changed only by moving the explained ones down.
    assert {d.feature for d in result.top_down} == {d.feature for d in plain.top_down}
    effect_top = [d.feature for d in plain.top_down[:10]]
    shown_top = [d.feature for d in result.top_down[:10]]
    assert shown_top != effect_top
    moved_out = set(effect_top) - set(shown_top)
    assert moved_out and all(d.length_explained for d in result.top_down
                             if d.feature in moved_out)
