"""Themes: significant features grouped by co-firing, from the retrieval ring's co-occurrence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from saewatch.config import ComparisonSpec, DiffSettings, StateSettings
from saewatch.diff.report import build_report
from saewatch.diff.themes import MIN_JOINT_DOCUMENTS, NPMI_LINK, group_themes
from saewatch.models import ComparisonResult, CooccurrenceCounts, FeatureDelta
from saewatch.state.monitor import MonitorState
from saewatch.state.testing import make_batch

D_SAE = 32
N = 600  # documents per version
SETTINGS = DiffSettings(window_comparisons=False, auto_latest=False, min_documents=30,
                        comparisons=[ComparisonSpec(model_id="m", baseline="v1",
                                                    candidate="v2")])
LABELS = {1: "markdown headings", 2: "numbered lists", 3: "bold key terms", 7: "one-line answers"}


def rows(version: str, seed: int) -> list[list[int]]:
    """Features 1-3 fire together on 'structured' documents (10% in v1, 55% in v2), feature 7
    alone (40% -> 10%), feature 9 rises on its own (10% -> 35%); 20-29 are background noise."""
    rng = np.random.default_rng(seed)
    structured, seven, nine = {"v1": (0.10, 0.40, 0.10), "v2": (0.55, 0.10, 0.35)}[version]
    out = []
    for _ in range(N):
        row = set(np.flatnonzero(rng.random(10) < 0.3) + 20)
        if rng.random() < structured:
            row |= {f for f in (1, 2, 3) if rng.random() < 0.9}
        if rng.random() < seven:
            row.add(7)
        if rng.random() < nine:
            row.add(9)
        out.append(sorted(int(f) for f in row))
    return out


def diff(with_nine: bool = False, settings: DiffSettings = SETTINGS) -> tuple[
        ComparisonResult, dict[str, list[list[int]]], MonitorState]:
    docs = {v: rows(v, seed) for v, seed in (("v1", 0), ("v2", 1))}
    if not with_nine:
        docs = {v: [[f for f in r if f != 9] for r in rs] for v, rs in docs.items()}
    state = MonitorState(StateSettings(retrieval_capacity=5_000))
    start = 0
    for version, rs in docs.items():
        for at in range(0, N, 100):
            state.update(make_batch(rs[at:at + 100], D_SAE, version=version, start=start))
            start += 100
    report = build_report(state.view(), settings, LABELS)
    return report.comparisons[0], docs, state


def test_co_firing_features_that_rise_together_are_one_theme_the_faller_another() -> None:
    r, docs, _ = diff()
    assert r.verdict == "drift"
    assert {d.feature for d in r.top_up} == {1, 2, 3} and [d.feature for d in r.top_down] == [7]
    up, down = [t for t in r.themes if t.direction == "up"], [
        t for t in r.themes if t.direction == "down"]
    assert len(r.themes) == 2 and r.n_significant_themes == 2
    theme = up[0]
    # The leader is the member whose share rose most, the others follow by effect.
    by_effect = [d.feature for d in r.top_up]
    assert theme.features == tuple(by_effect) and theme.leader == by_effect[0]
    assert theme.id == f"up-{theme.leader}" and theme.q_value == r.top_up[0].q_value
    lead = r.top_up[0]
    assert theme.leader_effect == pytest.approx(lead.freq_candidate - lead.freq_baseline)
    assert theme.labels == tuple(LABELS[f] for f in theme.features)
    assert theme.cohesion is not None and theme.cohesion > 0.8
    # Effect: the change of the share of documents with ANY member, counted on the ring.
    assert theme.effect_basis == "any_member"
    share = {v: sum(bool({1, 2, 3} & set(row)) for row in rs) / N for v, rs in docs.items()}
    assert theme.share_baseline == pytest.approx(share["v1"])
    assert theme.share_candidate == pytest.approx(share["v2"])
    assert theme.effect == pytest.approx(share["v2"] - share["v1"]) and theme.effect > 0.35
    # Examples from both sides: the leader's.
    assert theme.examples_baseline == r.top_up[0].examples_baseline != ()
    assert theme.examples_candidate == r.top_up[0].examples_candidate != ()
    (fall,) = down
    assert fall.features == (7,) and fall.cohesion is None and fall.labels == ("one-line answers",)
    seven = {v: sum(7 in row for row in rs) / N for v, rs in docs.items()}
    assert fall.effect == pytest.approx(seven["v2"] - seven["v1"]) and fall.effect < -0.2


def test_a_feature_that_rises_on_its_own_is_not_merged_into_the_theme() -> None:
    r, _, state = diff(with_nine=True)
    up = [t for t in r.themes if t.direction == "up"]
    assert sorted(tuple(sorted(t.features)) for t in up) == [(1, 2, 3), (9,)]
    counts = state.view().cooccurrence([1, 2, 3, 9], "m", ["v1", "v2"])
    # Within each version 9 is independent of the theme, although both rise (pooled, the
    # mixture alone would make them look associated).
    assert np.abs(counts.npmi[3, :3]).max() < 0.15
    assert counts.npmi[0, 1] > NPMI_LINK and counts.npmi[1, 2] > NPMI_LINK


def test_every_theme_is_cohesive_and_no_two_themes_of_a_direction_would_merge() -> None:
    r, _, state = diff(with_nine=True)
    features = [f for t in r.themes for f in t.features]
    npmi = state.view().cooccurrence(features, "m", ["v1", "v2"]).npmi
    at = {f: i for i, f in enumerate(features)}
    for t in r.themes:
        idx = [at[f] for f in t.features]
        if len(idx) > 1:
            pairs = npmi[np.ix_(idx, idx)][np.triu_indices(len(idx), 1)]
            assert pairs.mean() >= NPMI_LINK and t.cohesion == pytest.approx(pairs.mean())
        for other in r.themes:
            if other.id != t.id and other.direction == t.direction:
                cross = npmi[np.ix_(idx, [at[f] for f in other.features])]
                assert cross.mean() < NPMI_LINK


def _delta(feature: int, fa: float, fb: float, q: float = 1e-6) -> FeatureDelta:
    return FeatureDelta(feature=feature, count_baseline=0, count_candidate=0, freq_baseline=fa,
                        freq_candidate=fb, log_odds_ratio=fb - fa, p_value=q, q_value=q,
                        direction="up" if fb > fa else "down")


def _counts(npmi: float, joint: int) -> CooccurrenceCounts:
    """Two features seen in 40 of 400 documents each, ``joint`` of them together."""
    return CooccurrenceCounts(
        model_id="m", field="response", versions=("v2",), features=(4, 5),
        n_documents=np.array([400]), saturated=np.array([0]), joint=np.array([[[40, joint], [joint, 40]]]),
        npmi=np.array([[1.0, npmi], [npmi, 1.0]]), masks=np.zeros(0, np.uint64),
        mask_version=np.zeros(0, np.int64))


@pytest.mark.parametrize(("npmi", "joint", "merged"), [
    (NPMI_LINK + 0.01, 20, True),
    (NPMI_LINK - 0.01, 20, False),
    (0.95, MIN_JOINT_DOCUMENTS - 1, False),  # too few shared documents to count
    (0.95, MIN_JOINT_DOCUMENTS, True),
])
def test_the_npmi_threshold_and_minimum_support_decide_a_link(npmi: float, joint: int,
                                                              merged: bool) -> None:
    deltas = [_delta(4, 0.05, 0.30), _delta(5, 0.05, 0.20)]
    themes, n = group_themes(deltas, _counts(npmi, joint))
    assert [t.features for t in themes] == ([(4, 5)] if merged else [(4,), (5,)])
    assert n == len(themes)
    # Without the ring's sides the effect is the leader's change of document frequency.
    assert themes[0].effect_basis == "leader" and themes[0].effect == pytest.approx(0.25)


def test_themes_are_capped_per_direction_and_counted_before_the_cap() -> None:
    deltas = [_delta(f, 0.1, 0.2 + 0.01 * f) for f in range(6)] + [_delta(40, 0.5, 0.1)]
    themes, n = group_themes(deltas, None, top_k=2)
    assert [t.features for t in themes] == [(5,), (4,), (40,)] and n == 7


def test_without_a_retrieval_ring_every_feature_is_a_theme() -> None:
    r, _, state = diff()
    bare = build_report(state.view(), SETTINGS, LABELS).comparisons[0]
    assert bare.themes == r.themes  # one view, one report
    view = replace(state.view(), retrieval_source=None)
    alone = build_report(view, SETTINGS, LABELS).comparisons[0]
    assert sorted(t.features for t in alone.themes) == [(1,), (2,), (3,), (7,)]
    assert {t.effect_basis for t in alone.themes} == {"leader"}


@pytest.mark.slow  # reads the cached codes of the real-data tests (encodes them on a cold cache)
def test_real_concise_variant_collapses_into_a_few_themes() -> None:
    """claude-2.1 vs its concise variant on disjoint halves of all 805 prompts (the codes of
    tests/diff/test_diff_real.py, with presence thresholds: median ~48 features per response).
    Measured: 32 significant features in 16 themes, the largest of 5; 28 of the 32 fall. At the
    ring's default 64 features per event more than 1% of the long responses are saturated, so
    effects fall back to the leaders'; with 2,048 every present feature is indexed."""
    from benchmarks.quality.alpaca_codes import N_ALPACA, CodesCache, as_batch, halves

    cache, chosen = CodesCache(), np.arange(N_ALPACA)
    base, encoder_id, d_sae = cache.codes("claude-2.1", chosen)
    cand, _, _ = cache.codes("claude-2.1_concise", chosen)
    first, second = halves(len(chosen), 0)
    settings = SETTINGS.model_copy(update={
        "top_k": 50, "min_documents": 50,
        "comparisons": [ComparisonSpec(model_id="alpaca_eval", baseline="v1", candidate="v2")]})
    results = {}
    for cap in (64, 2_048):
        state = MonitorState(StateSettings(retrieval_capacity=1_000, retrieval_max_features=cap))
        state.update(as_batch(base.take(first), "claude-2.1", "v1", chosen[first], encoder_id,
                              d_sae))
        state.update(as_batch(cand.take(second), "claude-2.1_concise", "v2", chosen[second],
                              encoder_id, d_sae))
        results[cap] = build_report(state.view(), settings).comparisons[0]
    full, capped = results[2_048], results[64]
    assert full.verdict == "drift" and full.n_significant >= 20
    candidates = sum(len(t.features) for t in full.themes)
    assert candidates >= 20 and full.n_significant_themes <= 30
    assert full.n_significant_themes < 0.6 * candidates  # co-firing features were grouped
    assert max(t.size for t in full.themes) >= 3
    assert {t.effect_basis for t in full.themes} == {"any_member"}
    assert all(t.cohesion >= NPMI_LINK for t in full.themes if t.cohesion is not None)
    # Concise answers: the largest phenomena fall.
    assert sum(t.size for t in full.themes if t.direction == "down") > 0.8 * candidates
    assert {t.effect_basis for t in capped.themes} == {"leader"}
    assert len(capped.themes) <= 2 * settings.top_k
