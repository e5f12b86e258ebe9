"""End to end: real Kafka, the real daemon with the shipped default model and SAE, a real
Prometheus with the project's alert rules. A drifting version pair fires the drift alert;
an A/A pair (one model's responses split in two) in the same stream does not."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from saewatch.datasets import alpaca_events
from tests.support.app import serving, start, wait_for
from tests.support.kafka import free_port
from tests.support.prometheus import PrometheusServer, fast_rules

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.slow]

EVENTS_PER_VERSION = 90
ALERT = "SaewatchBehaviouralDrift"
# Encoding runs at ~5 events/s on 2 idle cores; allow for a loaded machine.
ALERT_TIMEOUT_S = 1200


def _pair(baseline: str, candidate: str, model_id: str, versions: tuple[str, str], n: int):
    """``baseline`` answers one random half of the prompts, ``candidate`` the other."""
    indices = list(range(805))
    random.Random(5).shuffle(indices)
    a = alpaca_events(baseline, version=versions[0], model_id=model_id, indices=indices[:n])
    b = alpaca_events(candidate, version=versions[1], model_id=model_id, indices=indices[n:2 * n],
                    start=a[-1].timestamp)
    return a + b


@pytest.mark.timeout(ALERT_TIMEOUT_S + 300)
def test_drift_alert_fires_for_a_drifting_pair_and_not_for_a_a(
    tmp_path: Path, kafka_cluster
) -> None:
    topic = kafka_cluster.create_topic(1, prefix="e2e")  # one partition: the stream's order
    # A real behaviour change (claude-2.1 asked to be concise), and an A/A pair of one model.
    drifting = _pair("claude-2.1", "claude-2.1_concise", "bot", ("v1", "v2"), EVENTS_PER_VERSION)
    steady = _pair("claude-2.1", "claude-2.1", "steady", ("a1", "a2"),
                   EVENTS_PER_VERSION)
    # Interleave the two applications, each in its own time order, as a shared topic would.
    messages = [(e.event_id.encode(), e.model_dump_json().encode())
                for pair in zip(drifting, steady, strict=True) for e in pair]
    kafka_cluster.produce_raw(topic, messages)

    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": [kafka_cluster.bootstrap], "topic": topic,
                  "group_id": f"{topic}-g", "session_timeout_ms": 6000},
        "encode": {"device": "cpu", "max_tokens_per_text": 128},
        "state": {"snapshot_dir": str(tmp_path / "snapshots")},
        "source": {"batch_size": 16},
        "diff": {"interval_s": 2.0, "min_documents": 60, "comparisons": [
            {"model_id": "bot", "baseline": "v1", "candidate": "v2"},
            {"model_id": "steady", "baseline": "a1", "candidate": "a2"}]},
        "web": {"listen_address": address},
    }))
    log = tmp_path / "daemon.log"
    daemon = start("run", config, log)
    try:
        wait_for(lambda: serving(config), [daemon], log)
        rules = fast_rules(tmp_path / "rules", "4s")
        with PrometheusServer(tmp_path / "prometheus", [address], rules) as prom:
            deadline = time.monotonic() + ALERT_TIMEOUT_S
            while time.monotonic() < deadline and not prom.alerts(ALERT, "firing"):
                assert daemon.poll() is None, log.read_text()[-4000:]
                time.sleep(2)
            firing = prom.alerts(ALERT, "firing")
            assert {a["labels"]["model_id"] for a in firing} == {"bot"}, log.read_text()[-3000:]
            assert {a["labels"]["candidate"] for a in firing} == {"v2"}
            # Wait until the A/A pair has been fully consumed and judged, then look again.
            verdicts = 'saewatch_comparison_verdict{model_id="steady",kind="versions"} == 1'
            wait_for(lambda: _aa_judged(prom), [daemon], log)
            time.sleep(10)  # several evaluations with the shortened `for:`
            assert all(a["labels"]["model_id"] != "steady" for a in prom.alerts(ALERT)), verdicts
            docs = prom.query('saewatch_comparison_documents{model_id="steady",kind="versions"}')
            assert {int(float(s["value"][1])) for s in docs} == {EVENTS_PER_VERSION}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)


def _aa_judged(prom: PrometheusServer) -> bool:
    docs = prom.query('saewatch_comparison_documents{model_id="steady",kind="versions"}')
    verdict = prom.query('saewatch_comparison_verdict{model_id="steady",kind="versions",'
                         'verdict="no_drift"} == 1')
    return bool(verdict) and {int(float(s["value"][1])) for s in docs} == {EVENTS_PER_VERSION}
