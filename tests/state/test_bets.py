"""The pooled betting test: valid on A/A streams however often looked at, powerful on shifts,
for a release and a canary, and unchanged by snapshot/restore; replicas merge by averaging."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from saewatch.config import DiffSettings, StateSettings
from saewatch.diff.report import build_report
from saewatch.models import N_DESCRIPTORS, FeatureBatch
from saewatch.state.betting import Observation, PairedBet
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import T0, make_batch

D = 256
QUICK = StateSettings(retrieval_capacity=1_000, cluster_warmup_events=0)
RATES = np.random.default_rng(7).beta(0.4, 6, size=D)  # sparse, skewed like real SAE codes


def draw(rng: np.random.Generator, shift: float = 0.0) -> Observation:
    p = RATES * np.where(np.arange(D) < 16, 1 + shift, 1.0)
    features = np.flatnonzero(rng.random(D) < np.minimum(p, 1)).astype(np.int32)
    desc = np.log1p(rng.poisson(np.full(N_DESCRIPTORS, 4.0))).astype(np.float64)
    return Observation(features, desc)


def aa_alarms(streams: int, pairs: int, alpha: float, seed: int) -> int:
    """Streams whose test ever reached 1/alpha: the peak is the maximum over every pair, i.e.
    a look after each event, the most often a report can be recomputed."""
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(streams):
        bet = PairedBet(D, N_DESCRIPTORS, queue_capacity=pairs)
        for _ in range(pairs):
            bet.add(0, draw(rng))
            bet.add(1, draw(rng))
        alarms += bet.peak_log_evidence >= math.log(1 / alpha)
    return alarms


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_false_alarm_rate_stays_below_alpha_on_simulated_aa_streams(alpha: float) -> None:
    streams = 300
    alarms = aa_alarms(streams, pairs=120, alpha=alpha, seed=int(alpha * 100))
    # Fails when the rate exceeds alpha beyond chance: above the 99.9% quantile of
    # Binomial(streams, alpha) (a test with twice the error rate fails here ~always).
    assert alarms <= binom.ppf(0.999, streams, alpha), (alarms, streams, alpha)


def test_it_detects_a_shift_in_a_few_features_and_in_descriptors() -> None:
    rng = np.random.default_rng(3)
    delays = []
    for _ in range(10):
        bet = PairedBet(D, N_DESCRIPTORS, queue_capacity=500)
        for i in range(400):
            bet.add(0, draw(rng))
            bet.add(1, draw(rng, shift=2.0))
            if bet.peak_log_evidence >= math.log(100):
                delays.append(i + 1)
                break
    assert len(delays) == 10 and float(np.median(delays)) < 200, delays


def batch_of(rng: np.random.Generator, version: str, n: int, start: int, shift: float,
             ) -> FeatureBatch:
    rows = [draw(rng, shift).features.tolist() for _ in range(n)]
    words = [" ".join(["word"] * int(rng.poisson(60 if shift == 0 else 30))) for _ in range(n)]
    return make_batch(rows, d_sae=D, version=version, start=start, texts=words)


def run_state(order: str, shift: float, seed: int, looks: int = 20) -> tuple[bool, int]:
    """A release (all of v1, then v2) or a canary (interleaved), looked at ``looks`` times
    through the daemon's own path; (verdict ever drift, pairs bet on)."""
    rng = np.random.default_rng(seed)
    state = MonitorState(QUICK)
    settings = DiffSettings(window_comparisons=False, min_documents=10)
    if order == "release":
        state.update(batch_of(rng, "v1", 200, 0, 0.0))
    drift = False
    for look in range(looks):
        if order == "canary":
            state.update(batch_of(rng, "v1", 10, 10_000 + look * 10, 0.0))
        state.update(batch_of(rng, "v2", 10, 20_000 + look * 10, shift))
        result = build_report(state.view(), settings).comparisons[0]
        drift |= result.verdict == "drift"
    assert result.bet is not None and (result.bet.baseline, result.bet.candidate) == ("v1", "v2")
    return drift, result.bet.pairs


@pytest.mark.parametrize("order", ["release", "canary"])
def test_the_daemon_path_alarms_on_a_shift_for_a_release_and_a_canary(order: str) -> None:
    drift, pairs = run_state(order, shift=3.0, seed=1)
    assert drift and pairs == 200


def test_the_daemon_path_stays_quiet_on_aa_streams_looked_at_twenty_times() -> None:
    alarms = sum(run_state("release", shift=0.0, seed=s)[0] for s in range(12))
    assert alarms <= 1  # alpha 0.01: at most 0.12 expected


def test_snapshot_restore_continues_the_same_test(tmp_path: object) -> None:
    rng = np.random.default_rng(5)
    batches = [batch_of(rng, "v1", 80, 0, 0.0)] + [
        batch_of(rng, "v2", 20, 1_000 + 20 * i, 1.0) for i in range(4)]
    whole = MonitorState(QUICK)
    for b in batches:
        whole.update(b)
    first = MonitorState(QUICK)
    for b in batches[:2]:
        first.update(b)
    store = SnapshotStore(str(tmp_path), keep=1)
    store.save(first.snapshot(), {})
    loaded = store.load_latest()
    assert loaded is not None
    resumed = MonitorState(QUICK)
    resumed.restore(loaded.state)
    for b in batches[2:]:
        resumed.update(b)
    assert resumed.view(now=T0).bets == whole.view(now=T0).bets
    assert whole.view(now=T0).bets[0].pairs == 80


def test_merged_replicas_average_their_wealth() -> None:
    rng = np.random.default_rng(9)
    sides = [MonitorState(QUICK) for _ in range(2)]
    for r, state in enumerate(sides):
        state.update(batch_of(rng, "v1", 60, r * 1_000, 0.0))
        state.update(batch_of(rng, "v2", 60, r * 1_000 + 500, 2.0))
    before = [s.view(now=T0).bets[0] for s in sides]
    sides[0].merge(sides[1])
    merged = sides[0].view(now=T0).bets[0]
    assert merged.pairs == before[0].pairs + before[1].pairs
    # The mixture's wealth is linear in the per-fraction wealths: the merge averages it.
    expected = math.log((math.exp(before[0].log_evidence) + math.exp(before[1].log_evidence)) / 2)
    assert merged.log_evidence == pytest.approx(expected, rel=1e-9)
    assert merged.peak_log_evidence == pytest.approx(max(0.0, expected))
