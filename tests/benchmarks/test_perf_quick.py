"""Smoke test of the Kafka performance benchmarks (``--quick``: tiny random model, tiny sizes,
the suite's real broker): every event is accounted for and the figures are sane. Speed itself is
never asserted here; ``make bench`` measures it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Unloaded, e2e takes ~1 and scaleout ~2 minutes; a machine shared with other jobs can be 5x slower.
pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.timeout(1500)]


def run_quick(module: str, out: Path, bootstrap: str) -> dict:
    """``python -m benchmarks.perf.<module> --quick`` against the session's broker."""
    target = out / f"{module}.json"
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.perf.{module}", "--quick", "--json", str(target)],
        cwd=ROOT, env=os.environ | {"SAEWATCH_KAFKA_BOOTSTRAP": bootstrap},
        capture_output=True, text=True, timeout=1400, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(target.read_text())
    assert json.loads(done.stdout) == result  # the same JSON on stdout
    return result


def test_e2e_quick_accounts_for_every_event(tmp_path: Path, kafka_bootstrap: str) -> None:
    r = run_quick("e2e", tmp_path, kafka_bootstrap)
    assert r["quick"] is True and r["all_events_accounted"] is True
    assert r["events"] == 24 and r["runs"] == 2
    assert len(r["e2e_s_per_run"]) == len(r["encoder_s_per_run"]) == 2
    assert all(x > 0 for x in r["e2e_vs_encoder_per_run"])
    assert r["e2e_vs_encoder"] == pytest.approx(r["encoder_s_median"] / r["e2e_s_median"],
                                                abs=2e-3)
    assert r["e2e_events_per_s"] == pytest.approx(24 / r["e2e_s_median"], rel=1e-2)
    assert r["mean_tokens"]["response"] <= 32  # --quick truncates texts to 32 tokens
    assert r["encoder"]["d_sae"] == 256 and r["encoder"]["layers_run"] == "2 of 4"
    assert len(r["machine"]["loadavg_before"]) == 3


def test_scaleout_quick_counts_exactly_once(tmp_path: Path, kafka_bootstrap: str) -> None:
    r = run_quick("scaleout", tmp_path, kafka_bootstrap)
    configs = r["configurations"]
    assert [c["encoders"] for c in configs] == [1, 2, 3]
    for c in configs:
        assert c["events_counted"] == r["events_per_run"] * r["runs"] == 16
        assert c["exactly_once"] is True
        assert c["features_messages"] >= c["events_counted"]
        assert c["replayed_messages_dropped"] == c["features_messages"] - c["events_counted"]
        assert c["events_per_s"] > 0 and c["vs_one_encoder"] > 0
        assert all(0 < done <= total for done, total in
                   zip(c["encoders_done_s_per_run"], c["s_per_run"], strict=True))
    assert configs[0]["vs_one_encoder"] == 1.0
    agg = r["aggregator"]
    assert agg["messages"] == 2_000 and agg["distinct_source_events"] == 16
    assert agg["events_per_s"] > 0 and agg["mean_active_features_per_response"] > 0
    assert "CPU-bound" in r["note"]


def test_make_bench_runner_collects_results_and_crash_trials_are_exact(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """``benchmarks.run --quick`` on the single-core and crash benchmarks: JSON, summary, headline."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "aggregate",
         "crash_trials", "--out", str(tmp_path)],
        cwd=ROOT, env=os.environ | {"SAEWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap},
        capture_output=True, text=True, timeout=1400, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] is True and set(summary["benchmarks"]) == {"aggregate", "crash_trials"}
    assert all(b["returncode"] == 0 for b in summary["benchmarks"].values())
    headline = summary["benchmarks"]["crash_trials"]["headline"]
    assert headline["kills_total"] == 2 and headline["all_exact"] is True
    crash = json.loads((tmp_path / "crash_trials.json").read_text())["streams"][0]
    assert crash["documents"] == {f"{v}/{f}": 20 for v in ("v1", "v2")
                                  for f in ("prompt", "response")}
    assert crash["kills_mid_stream"] == 2 and crash["offsets_at_end"] and crash["poison_in_dlq"]
    aggregate = json.loads((tmp_path / "aggregate.json").read_text())
    assert aggregate["throughput"]["events_per_s"] > 0
    assert "| crash_trials | 0 |" in (tmp_path / "summary.md").read_text()
