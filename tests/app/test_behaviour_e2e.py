"""End to end: a behaviour defined by examples in the configuration, tracked from a real Kafka
topic through the daemon (the shipped default model and SAE) into a real Prometheus with the
project's rules. Answers that open with a German paragraph (a language switch) rise to 20% in
one model's new version, and the alert fires there; in an A/A pair of the same traffic it does
not. The detection figures over many streams are in docs/BENCHMARKS.md
(``benchmarks/detection/behaviours.py``)."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.detection.properties import PROPERTIES
from saewatch.datasets import alpaca_events, read_alpaca
from saewatch.models import LLMEvent
from tests.support.app import serving, start, wait_for
from tests.support.kafka import free_port
from tests.support.prometheus import PrometheusServer, fast_rules

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.slow]

N = 100  # events per version
PLANTED = 20  # of the candidate's N responses switch language (20%)
ALERT = "SaewatchBehaviourRose"
# Encoding runs at a few events/s on 2 cores at 64 tokens; allow for a loaded machine.
ALERT_TIMEOUT_S = 1200
GERMAN = PROPERTIES["german_prefix"]


def _versions(model_id: str, versions: tuple[str, str], indices: list[int],
              planted: int) -> list[LLMEvent]:
    a = alpaca_events("claude-2.1", version=versions[0], model_id=model_id,
                      indices=indices[:N])
    b = alpaca_events("claude-2.1", version=versions[1], model_id=model_id,
                      indices=indices[N:2 * N], start=a[-1].timestamp)
    b = [e.model_copy(update={"response": GERMAN.apply(e.response)}) if i % (N // planted) == 0
         else e for i, e in enumerate(b)] if planted else b
    return a + b


@pytest.mark.timeout(ALERT_TIMEOUT_S + 300)
def test_a_behaviour_alert_fires_on_a_planted_rise_and_not_on_a_a(
    tmp_path: Path, kafka_cluster
) -> None:
    indices = list(range(805))
    random.Random(3).shuffle(indices)
    rising = _versions("bot", ("v1", "v2"), indices[:2 * N], PLANTED)
    steady = _versions("steady", ("a1", "a2"), indices[2 * N:4 * N], 0)
    topic = kafka_cluster.create_topic(1, prefix="behaviour")
    kafka_cluster.produce_raw(topic, [(e.event_id.encode(), e.model_dump_json().encode())
                                      for pair in zip(rising, steady, strict=True)
                                      for e in pair])
    # Five examples outside every stream: the switch on another model's answers.
    examples = [GERMAN.apply(r.output) for r in read_alpaca("claude-2.1_concise")[:5]]
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": [kafka_cluster.bootstrap], "topic": topic,
                  "group_id": f"{topic}-g", "session_timeout_ms": 6000},
        "encode": {"device": "cpu", "max_tokens_per_text": 64},
        "state": {"snapshot_dir": str(tmp_path / "snapshots")},
        "source": {"batch_size": 16},
        "diff": {"interval_s": 2.0, "min_documents": 60, "comparisons": [
            {"model_id": "bot", "baseline": "v1", "candidate": "v2"},
            {"model_id": "steady", "baseline": "a1", "candidate": "a2"}]},
        "behaviours": [{"name": "german", "examples": examples}],
        "web": {"listen_address": address},
    }))
    log = tmp_path / "daemon.log"
    daemon = start("run", config, log)
    try:
        wait_for(lambda: serving(config), [daemon], log)
        rules = fast_rules(tmp_path / "rules", "3s")
        with PrometheusServer(tmp_path / "prometheus", [address], rules) as prom:
            deadline = time.monotonic() + ALERT_TIMEOUT_S
            while time.monotonic() < deadline and not prom.alerts(ALERT, "firing"):
                assert daemon.poll() is None, log.read_text()[-4000:]
                time.sleep(2)
            firing = prom.alerts(ALERT, "firing")
            assert {(a["labels"]["behaviour"], a["labels"]["model_id"],
                     a["labels"]["candidate"]) for a in firing} == {("german", "bot", "v2")}, (
                log.read_text()[-3000:])
            wait_for(lambda: _scored(prom, "steady") == {N}, [daemon], log)
            wait_for(lambda: _scored(prom, "bot") == {N}, [daemon], log)
            time.sleep(8)  # several rule evaluations with the shortened `for:`
            assert all(a["labels"]["model_id"] != "steady" for a in prom.alerts(ALERT))
            shares = {s["metric"]["model_version"]: float(s["value"][1]) for s in prom.query(
                'saewatch:behaviour_share:max{behaviour="german",model_id="bot"}')}
            assert shares["v1"] < 0.03 and 0.15 < shares["v2"] < 0.25, shares
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)


def _scored(prom: PrometheusServer, model_id: str) -> set[int]:
    found = prom.query(f'saewatch_behaviour_events_scored{{behaviour="german",'
                       f'model_id="{model_id}"}}')
    return {int(float(s["value"][1])) for s in found} if len(found) == 2 else set()
