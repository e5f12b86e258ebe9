"""The always-valid alarm: false alarms on simulated A/A streams, power on real changes."""

from __future__ import annotations

import numpy as np

from saewatch.diff.sequential import alarm_threshold, msprt_log_evidence, sequential_alarms


def stream_alarms(rng: np.random.Generator, freq_a: np.ndarray, freq_b: np.ndarray,
                  looks: int = 40, step: int = 50, alpha: float = 0.05) -> int | None:
    """Grow both samples by ``step`` documents per look; the first look that alarms, if any."""
    a = np.zeros(len(freq_a), dtype=np.int64)
    b = np.zeros(len(freq_b), dtype=np.int64)
    for look in range(1, looks + 1):
        a += rng.binomial(step, freq_a)
        b += rng.binomial(step, freq_b)
        if sequential_alarms(a, look * step, b, look * step, alpha).any():
            return look
    return None


def test_aa_streams_looked_at_continuously_rarely_alarm() -> None:
    rng = np.random.default_rng(0)
    freq = rng.beta(0.5, 8, size=300)  # heavy-tailed feature frequencies
    alarms = sum(stream_alarms(rng, freq, freq) is not None for _ in range(40))
    assert alarms <= 2  # 40 streams x 40 looks at alpha=0.05: expect ~0, at most a couple


def test_a_real_change_alarms_early() -> None:
    rng = np.random.default_rng(1)
    freq = rng.beta(0.5, 8, size=300)
    changed = freq.copy()
    changed[:5] = np.minimum(changed[:5] + 0.15, 1.0)
    looks = [stream_alarms(rng, freq, changed) for _ in range(5)]
    assert all(look is not None and look <= 20 for look in looks)


def test_untested_features_carry_no_evidence() -> None:
    log_lam = msprt_log_evidence(np.array([0, 3]), 100, np.array([9, 0]), 100)
    assert log_lam.tolist() == [0.0, 0.0]  # fewer than MIN_EVENTS firings
    assert alarm_threshold(0.01, 1000) == np.log(1000 / 0.01)


def test_msprt_matches_the_formula_by_hand() -> None:
    # 50/1000 vs 150/1000: pooled 0.1, V = 0.1 * 0.9 * (2 / 1000), delta = 0.1, tau = 0.05
    v, t2, delta = 0.1 * 0.9 * 0.002, 0.05**2, 0.1
    expected = 0.5 * np.log(v / (v + t2)) + t2 * delta**2 / (2 * v * (v + t2))
    got = msprt_log_evidence(np.array([50]), 1000, np.array([150]), 1000, tau=0.05)[0]
    assert got == expected or abs(got - expected) < 1e-9
    # no difference: evidence below 0 (the mixture pays for its spread)
    assert msprt_log_evidence(np.array([100]), 1000, np.array([100]), 1000)[0] < 0
