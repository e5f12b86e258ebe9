"""Production Kafka security against a real broker that demands TLS and a password.

A broker of its own, started once for this module with ``deploy/kafka/start.sh --secure``: a
throw-away CA and broker certificate made by keytool, SASL_SSL and SASL_PLAINTEXT listeners with
SCRAM users added at format time (the plaintext listener is only for this test's own helpers).

1. ``saewatch produce``, ``run``, ``encode`` and ``aggregate`` and the dead-letter producer go
   through SASL_SSL with the README's configuration (CA file, SCRAM-SHA-512, mutual TLS with an
   encrypted key), the passwords from files and from the environment; the counts are exact.
2. Wrong or missing credentials, a wrong CA, a key that does not open, plaintext against a TLS
   port: exit 2 fast, with one line naming the setting, no traceback, nothing committed.
3. At DEBUG level neither password reaches a log line, /metrics, any API route,
   ``check-config`` or a snapshot.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer

from saewatch.config import load_settings
from saewatch.source.client import producer_options
from saewatch.source.file import write_events
from tests.source._secure_support import (
    api_bodies,
    client_certificate,
    daemon_config,
    make_other_ca,
    metrics_text,
    polled_every,
    readme_kafka,
    restored_state,
    snapshot_texts,
    without_password,
)
from tests.support.app import (
    TINY_HOOK,
    handled,
    kill_leftovers,
    pair_events,
    scrape,
    serving,
    snapshots_of,
    start,
    wait_for,
)
from tests.support.encode import save_tiny_model
from tests.support.kafka import KafkaCluster, LocalBroker

pytestmark = pytest.mark.kafka

EVENTS_PER_VERSION = 24
POISON = [b"{not json", b'{"event_id": "no-fields"}']
# The clients' bootstrap (and request) timeout in the error cases: every failure must end well
# before it, which kafka-python alone never does (it retries until then, and saewatch after).
BOOTSTRAP_TIMEOUT_S = 15
# All refusal cases run at once; the daemon among them imports torch and the model first.
REFUSALS_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    secured = LocalBroker(tmp_path_factory.mktemp("kafka-secure"), secure=True)
    try:
        try:
            secured.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield secured
    finally:
        secured.stop(purge=True)


@pytest.fixture(scope="module")
def cluster(broker: LocalBroker) -> Iterator[KafkaCluster]:
    helpers = KafkaCluster(broker.bootstrap)  # plaintext listener: the test's own eyes only
    yield helpers
    helpers.close()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama and TopK SAE saved to disk, as in tests/app (whose fixtures are not ours)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), TINY_HOOK)


@pytest.fixture(scope="module")
def clean_env() -> Iterator[pytest.MonkeyPatch]:
    """No SAEWATCH_KAFKA* of the developer's (SAEWATCH_KAFKA_BOOTSTRAP beats a config file)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("SAEWATCH_KAFKA")]:
            patch.delenv(name)
        yield patch


@dataclass
class Pipeline:
    """What one secured run left behind, for the tests below to judge."""

    topic: str
    features_topic: str
    run_config: Path
    aggregate_config: Path
    secrets: dict[str, str]
    produced: str = ""
    texts: dict[str, str] = field(default_factory=dict)  # where -> what it showed
    metrics: dict[Any, float] = field(default_factory=dict)  # the run daemon's samples
    snapshots: dict[str, bytes] = field(default_factory=dict)


def _saewatch(*args: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saewatch", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, env=os.environ | (env or {}))


@pytest.fixture(scope="module")
def pipeline(broker: LocalBroker, cluster: KafkaCluster, model_dirs: tuple[Path, Path],
             clean_env: pytest.MonkeyPatch,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """produce -> run (passwords from files) and encode -> aggregate (passwords from the
    environment), all over SASL_SSL with mutual TLS, at DEBUG level."""
    tmp = tmp_path_factory.mktemp("secure-pipeline")
    topic = cluster.create_topic(2, prefix="secure")
    features_topic = cluster.create_topic(2, prefix="secure-features")
    kafka = readme_kafka(broker) | client_certificate(broker)
    env_passwords = {"SAEWATCH_KAFKA__SASL_PASSWORD": broker.secret("saewatch.password"),
                     "SAEWATCH_KAFKA__SSL_PASSWORD": broker.secret("client-key.password")}
    from_files = kafka | {"ssl_password_file": str(broker.secrets / "client-key.password"),
                          "group_id": f"{topic}-run"}
    from_env = without_password(kafka) | {"features_topic": features_topic,
                                          "group_id": f"{topic}-scale"}
    run = daemon_config(tmp / "run.yaml", broker, topic, model_dirs, from_files)
    encode = daemon_config(tmp / "encode.yaml", broker, topic, model_dirs, from_env)
    aggregate = daemon_config(tmp / "aggregate.yaml", broker, topic, model_dirs, from_env)
    log = tmp / "daemons.log"
    result = Pipeline(topic, features_topic, run, aggregate, env_passwords)
    try:
        _run_pipeline(result, broker, cluster, kafka, (run, encode, aggregate), log,
                      env_passwords, tmp)
        yield result
    finally:
        kill_leftovers()


def _run_pipeline(result: Pipeline, broker: LocalBroker, cluster: KafkaCluster,
                  kafka: dict[str, Any], configs: tuple[Path, Path, Path], log: Path,
                  env_passwords: dict[str, str], tmp: Path) -> None:
    run, encode, aggregate = configs
    topic, features_topic = result.topic, result.features_topic
    procs = [start("run", run, log)]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env_passwords.items():
            patch.setenv(name, value)
        procs += [start("encode", encode, log), start("aggregate", aggregate, log)]
        events = tmp / "events.jsonl"
        with events.open("w") as out:
            write_events(pair_events(EVENTS_PER_VERSION), out)
        done = _saewatch("produce", "--config.file", str(encode), "--file", str(events),
                         "--partitions", "2", "--no-progress", "--log.level", "DEBUG")
        assert done.returncode == 0, done.stderr
        result.produced = done.stdout
        result.texts["produce output"] = done.stdout + done.stderr
        result.texts["check-config encode.yaml"] = _check_config(encode)
    result.texts["check-config run.yaml"] = _check_config(run)
    _send_poison(kafka, broker, topic)
    total = 2 * EVENTS_PER_VERSION + len(POISON)
    wait_for(lambda: handled(snapshots_of(run), topic) >= total, procs, log)
    # Without kills every valid event yields one features message: no replays to wait for.
    wait_for(lambda: handled(snapshots_of(aggregate), features_topic) >= 2 * EVENTS_PER_VERSION,
             procs, log)
    wait_for(lambda: all(serving(c) for c in (run, encode, aggregate)), procs, log)
    # The encoder commits after its features are acknowledged, and the poison may come last.
    committed = polled_every(1.0, lambda: sum(cluster.committed(f"{topic}-scale",
                                                                 topic).values()))
    wait_for(lambda: committed() >= total, procs, log)
    result.metrics = scrape(run)
    for config in (run, aggregate):
        result.texts[f"/metrics of {config.stem}"] = metrics_text(config)
        result.texts |= {f"{config.stem} GET {u}": b for u, b in api_bodies(config).items()}
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0], log.read_text()[-4000:]
    result.texts["daemon logs"] = log.read_text()
    for config in (run, aggregate):
        result.snapshots |= snapshot_texts(snapshots_of(config).directory)


def _check_config(config: Path) -> str:
    shown = _saewatch("check-config", "--config.file", str(config))
    assert shown.returncode == 0, shown.stderr
    return shown.stdout + shown.stderr


def _send_poison(kafka: dict[str, Any], broker: LocalBroker, topic: str) -> None:
    """Invalid records, sent over SASL_SSL with saewatch's own client options."""
    settings = load_settings(None, kafka=without_password(kafka) | {
        "sasl_password": broker.secret("saewatch.password"),
        "ssl_password": broker.secret("client-key.password")})
    producer = KafkaProducer(**producer_options(settings.kafka))
    try:
        for value in POISON:
            producer.send(topic, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()


def test_events_flow_over_sasl_ssl_and_counts_are_exact(
        pipeline: Pipeline, cluster: KafkaCluster) -> None:
    n = 2 * EVENTS_PER_VERSION
    assert pipeline.produced.startswith(f"produced {n} events to {pipeline.topic}")
    ran = restored_state(pipeline.run_config)
    aggregated = restored_state(pipeline.aggregate_config)
    assert ran.version_counts() == aggregated.version_counts()
    for version in ("v1", "v2"):
        for field_name in ("prompt", "response"):
            a = ran.counts("bot", version, field_name)
            b = aggregated.counts("bot", version, field_name)
            assert a.n_documents == b.n_documents == EVENTS_PER_VERSION
            np.testing.assert_array_equal(a.fired, b.fired)
    # Both consumer groups committed everything, over SASL_SSL.
    ends = cluster.end_offsets(pipeline.topic)
    assert sum(ends.values()) == n + len(POISON)
    assert cluster.committed(f"{pipeline.topic}-run", pipeline.topic) == ends
    assert cluster.committed(f"{pipeline.topic}-scale", pipeline.topic) == ends
    # The dead-letter producers of run and encode each delivered the poison.
    dead = cluster.read_topic(f"{pipeline.topic}.dlq")
    assert sorted(r.value for r in dead) == sorted(POISON * 2)


def test_metrics_count_the_secured_stream(pipeline: Pipeline) -> None:
    records = {o: pipeline.metrics[("saewatch_state_records", (("outcome", o),))]
               for o in ("processed", "invalid")}
    assert records == {"processed": 2 * EVENTS_PER_VERSION, "invalid": len(POISON)}


def test_no_secret_in_logs_metrics_api_check_config_or_snapshots(pipeline: Pipeline) -> None:
    texts = pipeline.texts
    logs = texts["daemon logs"]
    # The evidence is real: DEBUG lines were written, and the clients' options with them.
    assert " DEBUG saewatch." in logs and "'sasl_plain_password': '***'" in logs
    assert "'ssl_password': '***'" in logs
    assert "**********" in texts["check-config encode.yaml"]  # the passwords from the env
    assert sum(1 for where in texts if " GET /api/" in where) >= 8
    assert pipeline.snapshots
    for name, secret in pipeline.secrets.items():
        assert len(secret) >= 16
        leaks = [where for where, text in texts.items() if secret in text]
        leaks += [where for where, data in pipeline.snapshots.items() if secret.encode() in data]
        assert not leaks, f"{name}'s value appears in: {leaks}"


# --- wrong settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    command: str
    setting: str  # what the last line of standard error must name
    kafka: dict[str, Any]  # changes to the README's settings (None: remove the setting)
    env: dict[str, str] = field(default_factory=dict)


def _cases(broker: LocalBroker, other_ca: Path) -> dict[str, Case]:
    mtls = client_certificate(broker)
    return {
        "wrong password": Case("consume", "kafka.sasl_password",
                               {"sasl_password_file": None, "sasl_password": "wrong-password"}),
        # The daemon: it waits for an unavailable broker forever, so it must tell them apart.
        "wrong password, daemon, from env": Case(
            "run", "kafka.sasl_password", {"sasl_password_file": None},
            {"SAEWATCH_KAFKA__SASL_PASSWORD": "wrong-password"}),
        "unknown user": Case("produce", "kafka.sasl_username", {"sasl_username": "mallory"}),
        "missing password": Case("consume", "kafka.sasl_password", {"sasl_password_file": None}),
        "wrong CA": Case("produce", "kafka.ssl_cafile", {"ssl_cafile": str(other_ca)}),
        "no CA": Case("consume", "kafka.ssl_cafile", {"ssl_cafile": None}),
        "wrong key password": Case("consume", "kafka.ssl_password",
                                   mtls | {"ssl_password": "wrong-key-password"}),
        "key password missing": Case("consume", "kafka.ssl_password", mtls),
        "SASL mechanism not offered": Case("consume", "kafka.sasl_mechanism",
                                           {"sasl_mechanism": "PLAIN"}),
        "plaintext at the TLS port": Case("consume", "kafka.security_protocol",
                                          {"security_protocol": "PLAINTEXT"}),
        "SASL_PLAINTEXT at the TLS port": Case("produce", "kafka.security_protocol",
                                               {"security_protocol": "SASL_PLAINTEXT"}),
        "no credentials at the SASL port": Case(
            "consume", "kafka.security_protocol",
            {"bootstrap_servers": [broker.sasl_plaintext], "security_protocol": "PLAINTEXT"}),
    }


CASES = [
    "wrong password", "wrong password, daemon, from env", "unknown user", "missing password",
    "wrong CA", "no CA", "wrong key password", "key password missing",
    "SASL mechanism not offered", "plaintext at the TLS port", "SASL_PLAINTEXT at the TLS port",
    "no credentials at the SASL port",
]
CONNECTING = re.compile(r"^(\S+ \S+) INFO \S+ connecting (?:consumer|producer)", re.M)


@dataclass
class Outcome:
    topic: str
    config: Path
    setting: str
    returncode: int = -1
    stderr: str = ""
    connect_s: float | None = None  # from the first "connecting" log line to the exit


@pytest.fixture(scope="module")
def refusals(broker: LocalBroker, cluster: KafkaCluster, model_dirs: tuple[Path, Path],
             clean_env: pytest.MonkeyPatch,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case at once (they wait on nothing but the broker): one CLI process each."""
    tmp = tmp_path_factory.mktemp("refusals")
    cases = _cases(broker, make_other_ca(tmp))
    outcomes: dict[str, Outcome] = {}
    procs: dict[str, subprocess.Popen[str]] = {}
    for i, (name, case) in enumerate(cases.items()):
        topic = cluster.create_topic(1, prefix="refused")
        cluster.produce_raw(topic, [(None, b"{}")] * 3)  # what a wrongly working client commits
        kafka = readme_kafka(broker) | {"request_timeout_ms": BOOTSTRAP_TIMEOUT_S * 1000,
                                        "group_id": f"{topic}-g"}
        kafka = {k: v for k, v in (kafka | case.kafka).items() if v is not None}
        config = daemon_config(tmp / f"case{i}.yaml", broker, topic, model_dirs, kafka, "INFO")
        args = {"consume": ["--idle-exit", "1"],
                "produce": ["--alpaca", "NullModel", "--limit", "3", "--no-progress"]}
        outcomes[name] = Outcome(topic, config, case.setting)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "saewatch", case.command, "--config.file", str(config),
             *args.get(case.command, [])],
            stdout=subprocess.DEVNULL, stderr=(tmp / f"case{i}.err").open("w"), text=True,
            env=os.environ | case.env)
    ended: dict[str, datetime] = {}
    deadline = time.monotonic() + REFUSALS_TIMEOUT_S
    while len(ended) < len(procs) and time.monotonic() < deadline:
        ended |= {n: datetime.now() for n, p in procs.items()
                  if n not in ended and p.poll() is not None}
        time.sleep(0.05)
    for i, (name, proc) in enumerate(procs.items()):
        if proc.poll() is None:
            proc.kill()
        outcome = outcomes[name]
        outcome.returncode = proc.wait(timeout=30)
        outcome.stderr = (tmp / f"case{i}.err").read_text()
        first = CONNECTING.search(outcome.stderr)
        if first is not None and name in ended:
            began = datetime.strptime(first.group(1), "%Y-%m-%d %H:%M:%S,%f")
            outcome.connect_s = (ended[name] - began).total_seconds()
    return outcomes


@pytest.mark.parametrize("case_name", CASES)
def test_wrong_settings_exit_2_at_once_with_one_line_naming_the_setting(
        case_name: str, refusals: dict[str, Outcome], cluster: KafkaCluster) -> None:
    outcome = refusals[case_name]
    lines = outcome.stderr.strip().splitlines()
    assert outcome.returncode == 2, outcome.stderr[-3000:]
    assert lines and lines[-1].startswith(("saewatch: kafka.", "  kafka: ")), outcome.stderr[-3000:]
    assert outcome.setting in lines[-1], outcome.stderr[-3000:]
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    if case_name == "missing password":  # refused by the configuration, before any connection
        assert outcome.connect_s is None and "connecting" not in outcome.stderr
    else:  # kafka-python alone would still be retrying, and saewatch after it
        assert outcome.connect_s is not None and outcome.connect_s < BOOTSTRAP_TIMEOUT_S, (
            f"{outcome.connect_s}s from connecting to the exit")
    assert cluster.committed(f"{outcome.topic}-g", outcome.topic) == {}
    assert cluster.end_offsets(f"{outcome.topic}.dlq") == {0: 0}
    assert snapshots_of(outcome.config).load_latest() is None
