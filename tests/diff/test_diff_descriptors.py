"""Text descriptors in the diff: real version pairs, A/A splits, the verdict's family, windows."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest

from saewatch.config import ComparisonSpec, DiffSettings, StateSettings, WindowSettings
from saewatch.datasets import alpaca_events
from saewatch.diff.descriptors import DESCRIPTOR_TESTS, compare_descriptors
from saewatch.diff.report import build_report
from saewatch.models import (
    DESCRIPTOR_NAMES,
    N_BINS,
    N_DESCRIPTORS,
    ComparisonResult,
    DescriptorStats,
    FeatureBatch,
    LLMEvent,
    SparseCodes,
)
from saewatch.state.monitor import MonitorState

LENGTH = {"words", "characters", "tokens", "lines"}
SETTINGS = DiffSettings(window_comparisons=False, auto_latest=False, min_documents=30,
                        comparisons=[ComparisonSpec(model_id="m", baseline="v1",
                                                    candidate="v2")])


def text_batch(events: list[LLMEvent]) -> FeatureBatch:
    """Events with empty codes: descriptors need only the texts."""
    empty = SparseCodes.from_rows([[] for _ in events], [[] for _ in events])
    return FeatureBatch(encoder_id="t", d_sae=8, events=tuple(events), prompt=empty,
                        response=empty)


def index(e: LLMEvent) -> str:
    return e.event_id.rpartition(":")[2]


def split_pair(baseline: str, candidate: str, seed: int = 0) -> tuple[list[LLMEvent], ...]:
    """Candidate events on a random half of its prompts, baseline ones on other prompts."""
    rng = random.Random(seed)
    cand = alpaca_events(candidate, version="v2", model_id="m")
    base = alpaca_events(baseline, version="v1", model_id="m")
    rng.shuffle(cand)
    cand = cand[: max(len(cand) // 2, min(len(cand), len(base) - len(cand)))]
    taken = {index(e) for e in cand}
    rest = [e for e in base if index(e) not in taken]
    rng.shuffle(rest)
    return rest[: len(base) // 2], cand


def diff(base: list[LLMEvent], cand: list[LLMEvent],
         settings: DiffSettings = SETTINGS) -> ComparisonResult:
    state = MonitorState(StateSettings(retrieval_capacity=1_000))
    for events in (base, cand):
        for i in range(0, len(events), 64):
            state.update(text_batch(events[i:i + 64]))
    return build_report(state.view(), settings).comparisons[0]


@pytest.mark.parametrize(("baseline", "candidate"), [
    ("claude-2.1", "claude-2.1_concise"), ("gpt4_1106_preview", "gpt4_1106_preview_concise")])
def test_concise_variant_the_first_finding_is_shorter_answers(baseline: str,
                                                              candidate: str) -> None:
    r = diff(*split_pair(baseline, candidate))
    first = r.descriptors[0]
    assert first.moved and first.descriptor in LENGTH and first.direction == "down"
    assert first.statistic == "median" and first.candidate < 0.7 * first.baseline
    assert r.headline == first.text and "shorter: median" in first.text
    assert r.verdict == "drift"  # the codes are empty: only the descriptors moved
    assert [d.descriptor for d in r.descriptors if d.moved][:2] != []
    assert sorted(d.descriptor for d in r.descriptors) == sorted(DESCRIPTOR_NAMES)


def test_claude_concise_in_words() -> None:
    r = diff(*split_pair("claude-2.1", "claude-2.1_concise"))
    assert r.headline == "responses 58% shorter: median 195 -> 82 words"
    moved = [d.descriptor for d in r.descriptors if d.moved]
    assert moved[:3] == ["words", "characters", "lines"] and "list_items" in moved


@pytest.mark.parametrize("model", ["claude-2.1", "gpt4_1106_preview"])
def test_aa_splits_move_no_descriptor(model: str) -> None:
    events = alpaca_events(model, version="v1", model_id="m")
    for seed in range(4):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        half = len(shuffled) // 2
        second = [e.model_copy(update={"model_version": "v2"}) for e in shuffled[half:]]
        r = diff(shuffled[:half], second)
        assert r.verdict == "no_drift" and r.headline is None, (model, seed, r.message)
        assert not any(d.moved for d in r.descriptors)


def test_aa_stream_looked_at_every_twenty_events_never_moves() -> None:
    events = alpaca_events("claude-2.1", version="v1", model_id="m")
    shuffled = list(events)
    random.Random(11).shuffle(shuffled)
    half = len(shuffled) // 2
    a = shuffled[:half]
    b = [e.model_copy(update={"model_version": "v2"}) for e in shuffled[half:]]
    state = MonitorState(StateSettings(retrieval_capacity=1_000))
    for n in range(0, half - 20, 20):
        state.update(text_batch(a[n:n + 20] + b[n:n + 20]))
        r = build_report(state.view(), SETTINGS.model_copy(update={"min_documents": 10}))
        assert not any(d.moved for d in r.comparisons[0].descriptors), n


def test_descriptors_out_of_the_verdict_are_still_reported() -> None:
    # The pooled bet weighs descriptors too: off, only the per-feature family decides.
    settings = SETTINGS.model_copy(update={"descriptors_in_verdict": False, "bet_alpha_share": 0})
    r = diff(*split_pair("claude-2.1", "claude-2.1_concise"), settings=settings)
    assert r.verdict == "no_drift" and r.descriptors[0].moved
    assert "not in the verdict" in r.message


def test_shared_family_raises_the_feature_threshold_only_by_the_descriptor_tests() -> None:
    hist = np.zeros((N_DESCRIPTORS, N_BINS), dtype=np.int64)
    hist[:, 0] = 100
    same = DescriptorStats(model_id="m", model_version="v", field="response", n_documents=100,
                           hist=hist, sums=np.zeros(N_DESCRIPTORS))
    found = compare_descriptors(same, same, "response", 0.01, 0.2, 4096 + DESCRIPTOR_TESTS)
    assert found[0].threshold == pytest.approx(np.log((4096 + DESCRIPTOR_TESTS) / 0.01))
    assert not any(f.moved for f in found) and all(f.direction == "none" for f in found)


def test_window_comparison_uses_disjoint_descriptor_samples() -> None:
    base, cand = split_pair("claude-2.1", "claude-2.1_concise")
    t0 = base[0].timestamp
    # One version: long answers for a day, then concise ones in the last hour.
    events = [e.model_copy(update={"model_version": "v1", "timestamp": t0 + timedelta(minutes=i)})
              for i, e in enumerate(base[:300])]
    late = t0 + timedelta(minutes=300)
    events += [e.model_copy(update={"model_version": "v1",
                                    "timestamp": late + timedelta(seconds=10 * i)})
               for i, e in enumerate(cand[:200])]
    state = MonitorState(StateSettings(retrieval_capacity=1_000,
                                       windows=WindowSettings(windows={"1h": 3600})))
    for i in range(0, len(events), 64):
        state.update(text_batch(events[i:i + 64]))
    settings = DiffSettings(auto_latest=False, min_documents=30)
    (r,) = build_report(state.view(), settings).comparisons
    # The window is whole 5-minute buckets: it may reach a little before the concise hour.
    assert r.key.kind == "window" and r.n_baseline + r.n_candidate == 500
    assert r.n_candidate >= 200
    assert r.descriptors[0].moved and r.descriptors[0].direction == "down"


def test_report_summarises_every_descriptor_per_version() -> None:
    state = MonitorState(StateSettings(retrieval_capacity=1_000))
    state.update(text_batch(alpaca_events("claude-2.1_concise", version="v1", model_id="m",
                                          limit=64)))
    report = build_report(state.view(), SETTINGS)
    words = [d for d in report.descriptors if d.descriptor == "words" and d.field == "response"]
    assert len(report.descriptors) == 2 * N_DESCRIPTORS  # prompt and response
    assert words[0].documents == 64 and 20 < words[0].median < 200
