"""Smoke test of the detection benchmark (``--quick``: tiny encoder, tiny sizes, real broker).

Checks the structure of the results and basic sanity: the file and Kafka replays through the App
equal the cached simulation, no A/A stream alarms, a NullModel deploy is detected, and the dense
baseline is calibrated to the SAE method's A/A false-alarm count.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.detection.run import main

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> dict:
    out = tmp_path_factory.mktemp("detect")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAEWATCH_KAFKA_BOOTSTRAP", kafka_bootstrap)
        assert main(["--quick", "--out", str(out), "--cache-dir", str(out / "cache")]) == 0
    assert (out / "detection_delay.png").stat().st_size > 1000
    assert "### Planted properties" in (out / "detection_results.md").read_text()
    return json.loads((out / "detection_results.json").read_text())


def test_app_file_and_kafka_replays_equal_the_cached_simulation(results: dict) -> None:
    eq = results["equivalence"]
    assert eq["file"]["equal"] and eq["kafka"]["equal"]
    assert eq["simulation"]["documents"] == {"baseline": 80, "candidate": 80}
    assert eq["kafka"]["fired_digest"] == eq["simulation"]["fired_digest"]


def test_aa_streams_do_not_alarm_and_nullmodel_is_detected(results: dict) -> None:
    streams = results["streams"]
    aa = [s for s in streams if s["scenario"] == "aa"]
    assert len(aa) == 4
    assert not any(s["sae"]["any_alarm"] for s in aa)
    assert all(s["sae"]["final_n_significant"] <= 1 for s in aa)
    null = next(s for s in streams if s["params"].get("candidate") == "NullModel")
    assert null["sae"]["first_drift"] is not None
    assert null["sae"]["final_verdict"] == "drift"
    assert null["sae"]["top_up"] and null["sae"]["top_down"]


def test_planted_and_dense_results_are_complete(results: dict) -> None:
    planted = [s for s in results["streams"] if s["scenario"] == "planted"]
    assert len(planted) == 1
    assert planted[0]["params"]["planted"] == 16
    assert set(planted[0]["planted"]) >= {"shown", "features_with_planted_examples"}
    cal = results["dense_calibration"]
    assert cal["dense_aa_alarms"] == cal["sae_aa_alarms"] == 0
    for s in results["streams"]:
        assert len(s["dense"]["z"]) == len(s["looks"]) == s["events_per_side"] // 10


def test_compare_totals_match_the_streams(results: dict) -> None:
    from benchmarks.detection.compare import markdown, totals

    t = totals(results)
    drift = [s for s in results["streams"] if s["scenario"] != "aa"]
    assert t["drift_streams"] == len(drift) and t["aa_streams"] == 4 and t["aa_alarms"] == 0
    assert t["caught"] == sum(s["sae"]["first_drift"] is not None for s in drift) >= 1
    assert t["summed_delay"] == sum(s["sae"]["first_drift"] or s["events_per_side"]
                                    for s in drift)
    table = markdown({"a": results, "b": results})
    null = next(s for s in drift if s["params"].get("candidate") == "NullModel")
    assert f"| pair {null['params']['baseline']} → NullModel | " in table
    assert f"| drift streams caught | {t['caught']}/{len(drift)} | {t['caught']}/{len(drift)} |" \
        in table
